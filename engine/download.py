"""Base models from ModelScope and the Hugging Face Hub: downloaded once into the models cache, found
there again without the network, refused at once (not after the hubs' retries) when offline."""

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from core import texts
from core.errors import UserError
from engine.catalogue import ModelSpec
from engine.progress import Progress, reporter

_NETWORK_PROBE_SECONDS = 3.0


def download(spec: ModelSpec, cache: Path, progress: Progress | None) -> Path:
    """The snapshot of a hub model under `cache`, downloaded when it is not there yet."""
    cached = _cached_snapshot(spec, cache)
    if cached is not None:
        return cached
    host = _source_host(spec.source)
    if not _reachable(host):
        raise UserError("ERR_OFFLINE", name=spec.name, source=spec.source_title, host=host)
    report = reporter(progress, texts.DOWNLOADING.format(name=spec.name, source=spec.source_title))
    report(0.0, texts.STAGE_STARTING)
    try:
        if spec.source == "modelscope":
            from modelscope import snapshot_download

            path = snapshot_download(spec.name, cache_dir=str(cache))
        else:
            from huggingface_hub import snapshot_download

            path = snapshot_download(spec.name, cache_dir=str(cache))
    except Exception as error:  # the hubs raise many types; the user needs the id and the reason
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError("ERR_DOWNLOAD", name=spec.name, source=spec.source_title, reason=reason) from error
    report(1.0, texts.STAGE_DONE)
    return Path(path)


def _cached_snapshot(spec: ModelSpec, cache: Path) -> Path | None:
    try:
        if spec.source == "modelscope":
            from modelscope import snapshot_download

            path = snapshot_download(spec.name, cache_dir=str(cache), local_files_only=True)
        else:
            from huggingface_hub import snapshot_download

            path = snapshot_download(spec.name, cache_dir=str(cache), local_files_only=True)
    except Exception:  # not in the cache
        return None
    path = Path(path)
    return path if (path / "config.json").is_file() else None


def _source_host(source: str) -> str:
    if source == "modelscope":
        return os.environ.get("MODELSCOPE_DOMAIN", "www.modelscope.cn")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return urlparse(endpoint).hostname or "huggingface.co"


def _reachable(host: str) -> bool:
    """The hub clients retry for tens of seconds when offline; a short probe fails fast instead."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSLATOR_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection((host, 443), timeout=_NETWORK_PROBE_SECONDS):
            return True
    except OSError:
        return False
