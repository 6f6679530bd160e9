"""Adapter folders on disk: what makes one loadable, and the metadata the trainer writes beside it.

Chat picks an adapter per request through a hook on LoRA layers. That choice reaches only LoRA
layers: weights copied whole (`modules_to_save`, trainable tokens) or another PEFT tuner would
answer every request with the same weights, so such folders are refused at registration and load.
"""

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core import texts
from core.errors import UserError

WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
METADATA_FILE = "translator_adapter.json"


class AdapterRecord(Protocol):
    """What the engine reads of a registered adapter (registry.adapters.Adapter is one)."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def base_model(self) -> str: ...
    @property
    def prompt_format(self) -> str: ...


@dataclass(frozen=True)
class ResidentAdapter:
    """An adapter that lives in the model only, with no folder yet (the one being trained)."""

    name: str
    prompt_format: str
    base_model: str
    path: str = ""


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
        raise UserError("ERR_ADAPTER_FOLDER", name=name, folder=folder)
    if not (folder / WEIGHTS_FILE).is_file():
        raise UserError("ERR_ADAPTER_NOT_SAFETENSORS", name=name, file=WEIGHTS_FILE)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError("ERR_ADAPTER_CONFIG", name=name, file=CONFIG_FILE, error=error) from None
    tuner = config.get("peft_type")
    if tuner != "LORA":
        raise UserError("ERR_ADAPTER_NOT_LORA", name=name, tuner=tuner or "?")
    whole = [key for key in ("modules_to_save", "trainable_token_indices") if config.get(key)]
    if whole:
        modules = ", ".join(map(str, _names(config, whole)))
        raise UserError("ERR_ADAPTER_WHOLE_MODULES", name=name, kinds=", ".join(whole), modules=modules)
    check_safetensors(folder / WEIGHTS_FILE, texts.ADAPTER_WHO.format(name=name))
    return folder


def lora_settings(folder: Path) -> dict:
    """The LoRA an adapter folder holds (rank, alpha, dropout, target modules), to train it further."""
    config = json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8"))
    targets = config.get("target_modules") or []
    return {
        "lora_r": int(config["r"]),
        "lora_alpha": int(config["lora_alpha"]),
        "lora_dropout": float(config.get("lora_dropout") or 0.0),
        "target_modules": ",".join(sorted(targets if isinstance(targets, list) else [targets])),
    }


def weights_fingerprint(folder: Path) -> str:
    """The adapter's weights file, as one hash: a job that continues from it checks it is unchanged."""
    import hashlib

    return hashlib.sha256((Path(folder) / WEIGHTS_FILE).read_bytes()).hexdigest()[:16]


def check_safetensors(path: Path, who: str) -> None:
    """The header is readable JSON and the tensors it lists fill the file exactly: a truncated or
    overwritten file is found here instead of deep inside the loader."""
    problem = None
    try:
        with open(path, "rb") as file:
            size = path.stat().st_size
            (header_length,) = struct.unpack("<Q", file.read(8))
            if 8 + header_length > size:
                problem = texts.DAMAGE_HEADER
            else:
                header = json.loads(file.read(header_length))
                ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
                if 8 + header_length + max(ends, default=0) != size:
                    problem = texts.DAMAGE_SIZE.format(
                        needed=max(ends, default=0), held=size - 8 - header_length
                    )
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError) as error:
        problem = texts.DAMAGE_UNREADABLE.format(error=error)
    if problem:
        raise UserError("ERR_ADAPTER_DAMAGED", who=who, file=path.name, problem=problem)


def check_loadable(adapter: AdapterRecord, base_model_id: str) -> Path:
    """The adapter's folder, after refusing anything chat must not load."""
    if adapter.base_model != base_model_id:
        raise UserError(
            "ERR_ADAPTER_OTHER_BASE", name=adapter.name, trained=adapter.base_model, loaded=base_model_id
        )
    return check_folder(Path(adapter.path), adapter.name)


def _names(config: dict, keys: list[str]) -> list:
    found = []
    for key in keys:
        value = config[key]
        found.extend(
            value if isinstance(value, list) else list(value) if isinstance(value, dict) else [value]
        )
    return found
