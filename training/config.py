"""The trainer's settings: one dataclass, read from defaults, then a JSON file, then flags.

Defaults are the tutorials': LoRA r=8, alpha 32, dropout 0.1 on q/k/v/o/gate/up/down, lr 1e-4,
3 epochs, max length 384.
"""

import argparse
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from registry.errors import UserError

LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def _option(default, help_text: str):
    return field(default=default, metadata={"help": help_text})


@dataclass
class TrainConfig:
    # what to train
    base: str = _option(
        "builtin", "base model: builtin, modelscope:ORG/NAME, hf:ORG/NAME, ORG/NAME or a folder"
    )
    data: str = _option("", "dataset file: .json, .jsonl or .csv with input/output (and instruction)")
    role: str = _option("translator", "role: translator, persona, assistant or a custom role")
    name: str = _option("", "name of the adapter to publish")
    prompt_format: str = _option("", "yuan, chat_template or plain (default: the base model's)")
    # how much
    epochs: float = _option(3.0, "training epochs")
    max_steps: int = _option(-1, "stop after this many optimizer steps (overrides --epochs)")
    limit: int = _option(0, "use only the first N examples (0: all)")
    max_length: int = _option(384, "examples are cut to this many tokens")
    holdout: float = _option(0.05, "fraction of examples kept out of training, to evaluate on")
    skip_evaluation: bool = _option(False, "do not evaluate on the held-out examples after training")
    # optimisation
    lr: float = _option(1e-4, "learning rate")
    batch_size: int = _option(4, "examples per device per step")
    grad_accum: int = _option(4, "gradient accumulation steps")
    lora_r: int = _option(8, "LoRA rank")
    lora_alpha: int = _option(32, "LoRA alpha")
    lora_dropout: float = _option(0.1, "LoRA dropout")
    target_modules: str = _option(LORA_TARGETS, "comma-separated modules to adapt (those the model has)")
    gradient_checkpointing: str = _option("auto", "auto (on for >1B models on GPU), on or off")
    packing: str = _option("auto", "padding-free packed batches: auto (where exact; never Yuan), on or off")
    seed: int = _option(42, "random seed")
    # where and how
    device: str = _option("", "cpu or cuda (default: cuda when available)")
    dtype: str = _option("auto", "auto (bf16 on capable GPUs, fp32 on CPU), bf16, fp16 or fp32")
    save_steps: int = _option(0, "save a checkpoint every N steps (0: at the end of every epoch)")
    trust_remote_code: bool = _option(False, "run code shipped with the model (only if you trust it)")
    resume: bool = _option(False, "continue the newest interrupted/cancelled job of --name")
    job_id: int = _option(0, "run a job the app already queued in the registry")

    def as_dict(self) -> dict:
        return asdict(self)


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train a LoRA adapter and publish it to the registry.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="JSON file with any of the settings below")
    for option in fields(TrainConfig):
        flag = "--" + option.name.replace("_", "-")
        if option.type in (bool, "bool"):
            parser.add_argument(flag, action="store_true", help=option.metadata["help"])
        else:
            kind = {"int": int, "float": float, "str": str}.get(option.type, option.type)
            parser.add_argument(
                flag, type=kind, help=f"{option.metadata['help']} (default: {option.default})"
            )
    given = vars(parser.parse_args(argv))
    settings = read_config_file(Path(given.pop("config"))) if "config" in given else {}
    settings.update(given)
    return TrainConfig(**settings)


def read_config_file(path: Path) -> dict:
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"Config file not found: {path}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"Config file {path} is not valid UTF-8 JSON ({error}).") from None
    if not isinstance(settings, dict):
        raise UserError(f"Config file {path} must hold a JSON object of settings.")
    return check_keys(settings, str(path))


def check_keys(settings: dict, where: str) -> dict:
    known = {option.name for option in fields(TrainConfig) if option.default is not MISSING}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise UserError(f"{where}: unknown settings {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    return settings
