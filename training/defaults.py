"""Learning rate and epochs chosen by the base model's size, from measurements.

The tutorials' lr 1e-4 and 3 epochs were chosen for 2-3B models (Yuan2-2B, Llama-3.2-3B). A model
under a billion parameters learns far too slowly with them: bench/training_defaults.py measured
held-out BLEU per checkpoint for the built-in models at several rates (figures in bench/README.md
and in the reason the training page shows). `-1` for --lr or --epochs means "by model size";
`lifecycle.check_request` puts the chosen numbers into the job's canonical config.
"""

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from core import texts
from core.errors import UserError
from engine import catalogue

BY_SIZE = -1  # the value of --lr / --epochs that asks for the size's default


@dataclass(frozen=True)
class SizeClass:
    below: float  # parameters
    lr: float
    epochs: float
    name: str  # small | large


SIZE_CLASSES = (
    SizeClass(below=1e9, lr=1e-3, epochs=2.0, name="small"),
    SizeClass(below=math.inf, lr=1e-4, epochs=3.0, name="large"),
)
# Preference tuning moves a model that already answers well a little: rates an order below SFT's.
# Large: LLaMA-Factory's LoRA DPO example (5e-6, 3 epochs); small: bench/preference_gain.py.
PREFERENCE_SIZE_CLASSES = (
    SizeClass(below=1e9, lr=5e-5, epochs=1.0, name="small"),
    SizeClass(below=math.inf, lr=5e-6, epochs=3.0, name="large"),
)


@dataclass(frozen=True)
class Recommendation:
    lr: float
    epochs: float
    parameters: float | None
    preference: bool = False  # for a preference job (DPO, ORPO, KTO)

    @property
    def size_class(self) -> SizeClass:
        return _size_class(self.parameters, self.preference)

    def reason(self) -> str:
        size = (
            texts.DEFAULTS_SIZE.format(billions=self.parameters / 1e9)
            if self.parameters is not None
            else texts.DEFAULTS_SIZE_UNKNOWN
        )
        small = self.size_class.name == "small"
        if self.preference:
            text = texts.DEFAULTS_PREFERENCE_SMALL if small else texts.DEFAULTS_PREFERENCE_LARGE
        else:
            text = texts.DEFAULTS_SMALL if small else texts.DEFAULTS_LARGE
        return text.format(size=size, lr=f"{self.lr:g}", epochs=f"{self.epochs:g}")


def recommend(parameters: float | None, preference: bool = False) -> Recommendation:
    """The defaults for a model of this many parameters; an unknown size gets the large ones."""
    chosen = _size_class(parameters, preference)
    return Recommendation(chosen.lr, chosen.epochs, parameters, preference)


def _size_class(parameters: float | None, preference: bool = False) -> SizeClass:
    classes = PREFERENCE_SIZE_CLASSES if preference else SIZE_CLASSES
    if parameters is None:
        return classes[-1]
    return next(c for c in classes if parameters < c.below)


def parameter_count(model_dir: Path) -> int | None:
    """Parameters stored in a model folder's safetensors files, read from their headers only (no
    weights are loaded). None for a folder without safetensors."""
    total, found = 0, False
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        try:
            with open(path, "rb") as file:
                (length,) = struct.unpack("<Q", file.read(8))
                header = json.loads(file.read(length))
        except (OSError, ValueError, struct.error):
            return None
        found = True
        total += sum(math.prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")
    return total if found else None


def known_parameters(model_id: str) -> float | None:
    """The size of a model the studio knows, or of a local folder, before anything is downloaded."""
    entry = catalogue.CATALOGUE.get(model_id)
    if entry is not None and entry.parameters:
        return entry.parameters
    try:
        spec = catalogue.parse_model_id(model_id)
    except UserError:  # still being typed: no size yet
        return None
    if spec.source == "local":
        return parameter_count(Path(spec.name))
    return None


def for_base(model_id: str, preference: bool = False) -> Recommendation:
    return recommend(known_parameters(model_id), preference)


def resolve(config, model_dir: Path):
    """`config` with --lr / --epochs of -1 replaced by the defaults for the model in `model_dir`,
    and the recommendation (None when the user set both)."""
    from dataclasses import replace

    if config.lr != BY_SIZE and config.epochs != BY_SIZE:
        return config, None
    parameters = parameter_count(model_dir) or known_parameters(config.base)
    chosen = recommend(parameters, config.prefers or config.rewarded)
    return (
        replace(
            config,
            lr=chosen.lr * config.lr_scale if config.lr == BY_SIZE else config.lr,
            epochs=chosen.epochs if config.epochs == BY_SIZE else config.epochs,
        ),
        chosen,
    )
