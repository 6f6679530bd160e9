"""Adapter folders on disk: what makes one loadable, and the metadata the trainer writes beside it."""

import json
from pathlib import Path

from registry.errors import UserError

WEIGHTS_FILE = "adapter_model.safetensors"
METADATA_FILE = "translator_adapter.json"


def write_metadata(folder: Path, **metadata) -> None:
    (Path(folder) / METADATA_FILE).write_text(
        json.dumps(metadata, ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8"
    )


def check_loadable(adapter: dict, base_model_id: str) -> Path:
    """The adapter's folder, after refusing anything chat must not load."""
    folder = Path(adapter["path"])
    if adapter["base_model"] != base_model_id:
        raise UserError(
            f"Adapter {adapter['name']!r} was trained on {adapter['base_model']}, "
            f"but the loaded base model is {base_model_id}: switch the base model to "
            f"{adapter['base_model']} to use it."
        )
    if not (folder / "adapter_config.json").is_file():
        raise UserError(
            f"Adapter {adapter['name']!r}: its folder {folder} is missing or incomplete; "
            "delete the adapter on the adapters page or retrain it."
        )
    if not (folder / WEIGHTS_FILE).is_file():
        raise UserError(
            f"Adapter {adapter['name']!r} has no {WEIGHTS_FILE}: only safetensors adapters are "
            "loaded (pickle files can run code)."
        )
    return folder
