"""Adapter folders on disk: what makes one loadable, and the metadata the trainer writes beside it.

Chat picks an adapter per request through a hook on LoRA layers. That choice reaches only LoRA
layers: weights copied whole (`modules_to_save`, trainable tokens) or another PEFT tuner would
answer every request with the same weights, so such folders are refused at registration and load.
"""

import json
import struct
from pathlib import Path

from registry.errors import UserError

WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
METADATA_FILE = "translator_adapter.json"


def write_metadata(folder: Path, **metadata) -> None:
    (Path(folder) / METADATA_FILE).write_text(
        json.dumps(metadata, ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8"
    )


def read_metadata(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def check_folder(folder: Path, name: str) -> Path:
    """A complete, safetensors-only LoRA folder whose per-request choice reaches every weight."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise UserError(
            f"Adapter {name!r}: its folder {folder} is missing or incomplete; "
            "delete the adapter on the adapters page or retrain it."
        )
    if not (folder / WEIGHTS_FILE).is_file():
        raise UserError(
            f"Adapter {name!r} has no {WEIGHTS_FILE}: only safetensors adapters are "
            "loaded (pickle files can run code)."
        )
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"Adapter {name!r}: {CONFIG_FILE} cannot be read ({error}); retrain it.") from None
    tuner = config.get("peft_type")
    if tuner != "LORA":
        raise UserError(
            f"Adapter {name!r} is a {tuner or 'unknown'} adapter: only LoRA adapters can be chosen per "
            "request on a shared base model. Train a LoRA adapter instead."
        )
    whole = [key for key in ("modules_to_save", "trainable_token_indices") if config.get(key)]
    if whole:
        raise UserError(
            f"Adapter {name!r} also replaces whole modules ({', '.join(whole)}: "
            f"{', '.join(map(str, _names(config, whole)))}), which the per-request adapter choice cannot "
            "reach: every user would get those weights. Retrain it with LoRA target modules only."
        )
    check_safetensors(folder / WEIGHTS_FILE, f"Adapter {name!r}")
    return folder


def check_safetensors(path: Path, who: str) -> None:
    """The header is readable JSON and the tensors it lists fill the file exactly: a truncated or
    overwritten file is found here instead of deep inside the loader."""
    problem = None
    try:
        with open(path, "rb") as file:
            size = path.stat().st_size
            (header_length,) = struct.unpack("<Q", file.read(8))
            if 8 + header_length > size:
                problem = "its header is cut off"
            else:
                header = json.loads(file.read(header_length))
                ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
                if 8 + header_length + max(ends, default=0) != size:
                    problem = f"its tensors need {max(ends, default=0)} bytes, the file holds " + str(
                        size - 8 - header_length
                    )
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError) as error:
        problem = f"it cannot be read ({error})"
    if problem:
        raise UserError(f"{who}: {path.name} is damaged ({problem}). Delete the adapter and retrain it.")


def check_loadable(adapter: dict, base_model_id: str) -> Path:
    """The adapter's folder, after refusing anything chat must not load."""
    if adapter["base_model"] != base_model_id:
        raise UserError(
            f"Adapter {adapter['name']!r} was trained on {adapter['base_model']}, "
            f"but the loaded base model is {base_model_id}: switch the base model to "
            f"{adapter['base_model']} to use it."
        )
    return check_folder(Path(adapter["path"]), adapter["name"])


def _names(config: dict, keys: list[str]) -> list:
    found = []
    for key in keys:
        value = config[key]
        found.extend(
            value if isinstance(value, list) else list(value) if isinstance(value, dict) else [value]
        )
    return found
