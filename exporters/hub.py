"""Push an adapter, or its merged model, to the Hugging Face Hub or ModelScope, with its model card.

    python -m exporters.hub --adapter med-zh-1 --repo you/med-zh-1                 # the adapter, private
    python -m exporters.hub --adapter med-zh-1 --repo you/med-zh-1-merged --merged --hub modelscope

Repositories are created private unless `--public`. The token comes from the environment
(HF_TOKEN; MODELSCOPE_API_TOKEN) or the hub's own login (`hf auth login`), and is never stored in the
registry or written to a log. Offline, the push says so within seconds instead of retrying.
"""

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from core import errors, texts
from core.errors import UserError
from engine import catalogue, conversion, download, loading, models
from engine.adapters import CONFIG_FILE, METADATA_FILE, WEIGHTS_FILE, check_loadable
from exporters import merge
from registry import adapters as adapter_rows
from registry import connect
from registry import evaluations as evaluation_rows
from registry.adapters import Adapter
from studio import accounts
from studio.roles import get_role

HUBS = ("huggingface", "modelscope")
TOKEN_VARIABLES = {"huggingface": "HF_TOKEN", "modelscope": "MODELSCOPE_API_TOKEN"}
ADAPTER_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)
# ModelScope's repository licence is one of its own list (modelscope.hub.constants.Licenses); its
# client sends "Apache-2.0" when given none, so a base whose terms are not on the list gets "Other"
# and the card, which names the terms, says the rest.
MODELSCOPE_OTHER_LICENSE = "Other"


@dataclass(frozen=True)
class Pushed:
    url: str
    note: texts.Message | None = None  # what the person should know of the repository (its licence field)


def push(
    db,
    adapter_name: str,
    *,
    repo: str,
    hub: str = "huggingface",
    merged: bool = False,
    private: bool = True,
    stage=None,
) -> Pushed:
    """Upload; returns the repository's URL and what to know about it. `stage` hears prepare (or
    merge's steps), then upload."""
    stage = stage or (lambda name: None)
    token = check_push(hub, repo)
    adapter = adapter_rows.require(db, adapter_name)
    check_loadable(adapter, adapter.base_model)
    host = _host(hub)
    if not download._reachable(host):
        raise UserError("ERR_HUB_OFFLINE", host=host)
    with tempfile.TemporaryDirectory(prefix="translator-push-") as scratch:
        folder = Path(scratch) / "upload"
        if merged:
            merge.merge(db, adapter_name, folder, stage=stage)
        else:
            stage("prepare")
            _adapter_folder(db, adapter, folder)
        stage("upload")
        if hub == "huggingface":
            return Pushed(_push_huggingface(folder, repo, token, private, adapter_name))
        license_name = modelscope_license(adapter.base_model)
        url = _push_modelscope(folder, repo, token, private, adapter_name, license_name)
        if license_name != MODELSCOPE_OTHER_LICENSE:
            return Pushed(url)
        return Pushed(
            url, texts.Message("HUB_LICENSE_LEFT_TO_CARD", {"terms": merge.license_line(adapter.base_model)})
        )


def modelscope_license(base_model: str) -> str:
    """The base's licence as ModelScope lists it (SPDX, as its client sends), or "Other"."""
    from modelscope.hub.constants import Licenses

    listed = {name.lower().replace("apache license 2.0", "apache-2.0") for name in Licenses.to_list()}
    license_id = merge.LICENSES.get(base_model, "other")
    return license_id if license_id in listed else MODELSCOPE_OTHER_LICENSE


def _adapter_folder(db, adapter: Adapter, folder: Path) -> None:
    """The adapter's own files (safetensors only) and a model card."""
    folder.mkdir(parents=True)
    source = Path(adapter.path)
    for name in ADAPTER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)
    terms = conversion.builtin_license(adapter.base_model)  # the card says they are next to it
    if terms is not None and terms.is_file():
        shutil.copy2(terms, folder / terms.name)
    spec = catalogue.parse_model_id(adapter.base_model)
    tokenizer = loading.load_tokenizer(models.resolve_model_dir(spec), spec)
    role = get_role(db, adapter.role)
    prompt = merge.prompt_description(tokenizer, adapter, role)
    evaluations = evaluation_rows.for_adapter(db, adapter.id)
    card = merge.model_card(adapter, role, prompt, evaluations, "", merged=False)
    (folder / "README.md").write_text(card, encoding="utf-8")


def check_push(hub: str, repo: str) -> str:
    """The checks a push can make before any work (hub, repository name, token); returns the token,
    which stays in memory only."""
    if hub not in HUBS:
        raise UserError("ERR_HUB_UNKNOWN", hub=hub, choices=", ".join(HUBS))
    if not catalogue._REPO_ID.match(repo or ""):
        raise UserError("ERR_HUB_REPO", repo=repo)
    return _token(hub)


def _token(hub: str) -> str:
    variable = TOKEN_VARIABLES[hub]
    token = os.environ.get(variable)
    if not token and hub == "huggingface":
        from huggingface_hub import get_token

        token = get_token()
    if not token:
        raise UserError("ERR_HUB_TOKEN", variable=variable)
    return token


def _host(hub: str) -> str:
    if hub == "modelscope":
        return os.environ.get("MODELSCOPE_DOMAIN", "www.modelscope.cn")
    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"


def _push_huggingface(folder: Path, repo: str, token: str, private: bool, name: str) -> str:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    try:
        url = api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(
            folder_path=folder,
            repo_id=repo,
            repo_type="model",
            commit_message=f"Upload {name} from 翻译机器人",
        )
    except HfHubHTTPError as error:
        raise UserError("ERR_HUB_REFUSED", hub="Hugging Face", error=errors.message_of(error)) from None
    return str(url)


def _push_modelscope(folder: Path, repo: str, token: str, private: bool, name: str, license_name: str) -> str:
    from modelscope.hub.api import HubApi

    api = HubApi(token=token, max_retries=1)
    try:
        visibility = "private" if private else "public"
        api.create_repo(repo, visibility=visibility, license=license_name, exist_ok=True, token=token)
        api.upload_folder(
            repo_id=repo,
            folder_path=str(folder),
            commit_message=f"Upload {name} from 翻译机器人",
            token=token,
        )
    except Exception as error:  # modelscope raises requests' and its own errors alike
        raise UserError("ERR_HUB_REFUSED", hub="ModelScope", error=errors.message_of(error)) from None
    return f"https://{_host('modelscope')}/models/{repo}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exporters.hub", description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True, help="registered adapter to push")
    parser.add_argument("--repo", required=True, help="owner/name on the hub")
    parser.add_argument("--hub", default="huggingface", choices=HUBS)
    parser.add_argument("--merged", action="store_true", help="push the merged model instead of the adapter")
    parser.add_argument(
        "--public", action="store_true", help="create the repository public (default private)"
    )
    args = parser.parse_args(argv)
    try:
        accounts.cli_adapter(connect(), args.adapter, change=True)
        pushed = push(
            connect(), args.adapter, repo=args.repo, hub=args.hub, merged=args.merged, private=not args.public
        )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(pushed.url)
    if pushed.note:
        print(pushed.note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
