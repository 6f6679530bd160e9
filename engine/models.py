"""Where a base model's folder comes from: the offline built-ins (converted once), ModelScope or
Hugging Face (downloaded once), or a local folder. The ids are in engine/catalogue.py, loading a
folder in engine/loading.py. Downloads and conversions go to the models cache and are reused.
"""

import os
from pathlib import Path

from core import home
from engine import conversion, download
from engine.catalogue import BUILTIN_MODELS, ModelSpec
from engine.progress import Progress


def models_dir() -> Path:
    """Converted and downloaded models; TRANSLATOR_MODELS_DIR lets several homes share one cache."""
    configured = os.environ.get("TRANSLATOR_MODELS_DIR")
    if configured:
        path = Path(configured).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return home.models_dir()


def present_model_dir(spec: ModelSpec) -> Path | None:
    """The model's folder if it is already there, ready to load; never fetches or converts (for
    what a page shows: a conversion or a download happens only behind its progress bar)."""
    if spec.source == "local":
        return Path(spec.name)
    if spec.source == "builtin":
        target = models_dir() / BUILTIN_MODELS[spec.name].folder
        return target if conversion.conversion_version(target) >= conversion.CONVERSION_VERSION else None
    return download._cached_snapshot(spec, models_dir() / spec.source)


def resolve_model_dir(spec: ModelSpec, progress: Progress | None = None) -> Path:
    """A local folder holding the model in transformers format, fetching or converting it once."""
    if spec.source == "local":
        return Path(spec.name)
    if spec.source == "builtin":
        return conversion.builtin_dir(BUILTIN_MODELS[spec.name], models_dir(), progress)
    return download.download(spec, models_dir() / spec.source, progress)
