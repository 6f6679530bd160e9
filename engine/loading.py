"""Loading a base model folder: checked before anything heavy is read, the tokenizer and the model
loaded with messages that say what to do, the device and dtype chosen, the prompt format suggested."""

import json
import sys
from pathlib import Path

from core import texts
from core.errors import UserError, message_of
from engine.catalogue import CATALOGUE, ModelSpec

YUAN_MODEL_TYPE = "yuan"  # checkpoints that engine.yuan builds, whatever their auto_map says
# What makes a folder loadable, checked before anything heavy is read.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def choose_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def choose_dtype(device: str):
    """bf16 where the GPU computes it natively, fp16 on older GPUs, fp32 on CPU."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def parse_dtype(name: str | None, device: str):
    import torch

    if not name or name == "auto":
        return choose_dtype(device)
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if name not in dtypes:
        raise UserError("ERR_DTYPE", name=name)
    return dtypes[name]


def model_type(model_dir: Path) -> str | None:
    config = Path(model_dir) / "config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text(encoding="utf-8")).get("model_type")


def register_architectures() -> None:
    """Teach transformers' Auto classes our own ports (Yuan 2.0) before a model folder is read."""
    import engine.yuan  # noqa: F401  (registers itself with AutoConfig and AutoModelForCausalLM)


def check_model_folder(
    model_dir: Path, trust_remote_code: bool = False, needs: tuple[str, ...] = ("tokenizer", "weights")
) -> str | None:
    """Refuse a folder transformers cannot load, saying why, before anything heavy is read.
    `needs`: which files must be there besides config.json. Returns its model type."""
    model_dir = Path(model_dir)
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("ERR_NO_CONFIG", path=model_dir) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError("ERR_CONFIG_UNREADABLE", path=model_dir, error=error) from None
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind != YUAN_MODEL_TYPE and not (trust_remote_code and config.get("auto_map")):
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        if kind not in CONFIG_MAPPING_NAMES:
            import transformers

            advice = texts.ADVICE_SHIPS_CODE if config.get("auto_map") else texts.ADVICE_SUPPORTED
            raise UserError(
                "ERR_MODEL_TYPE", path=model_dir, kind=kind, version=transformers.__version__, advice=advice
            )
    if (
        "tokenizer" in needs
        and not any((model_dir / name).is_file() for name in TOKENIZER_FILES)
        and not list(model_dir.glob("*.tiktoken"))
    ):
        raise UserError("ERR_NO_TOKENIZER", path=model_dir, files=", ".join(TOKENIZER_FILES))
    if "weights" in needs and not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        raise UserError("ERR_NO_WEIGHTS", path=model_dir)
    return kind


def load_tokenizer(model_dir: Path, spec: ModelSpec, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    kind = check_model_folder(model_dir, trust_remote_code, needs=("tokenizer",))
    register_architectures()
    try:
        if kind == YUAN_MODEL_TYPE:
            from engine import yuan

            # Our port needs none of the checkpoint's code; its tokenizer is a plain LlamaTokenizer.
            tokenizer = AutoTokenizer.from_pretrained(model_dir, add_bos_token=False, add_eos_token=False)
            return yuan.prepare_tokenizer(tokenizer)
        with _explain_remote_code(spec, trust_remote_code):
            tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, ImportError, TypeError, KeyError) as error:
        raise UserError("ERR_TOKENIZER_LOAD", path=model_dir, error=message_of(error)) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    model_dir: Path,
    spec: ModelSpec,
    *,
    device: str,
    dtype,
    trust_remote_code: bool = False,
    quantize: str = "none",
):
    """The model on `device`; `quantize` (8bit, 4bit) loads its linear layers through bitsandbytes
    for QLoRA training, computing in `dtype` (the rest stays in `dtype`)."""
    from transformers import AutoModelForCausalLM

    if check_model_folder(model_dir, trust_remote_code, needs=("weights",)) == YUAN_MODEL_TYPE:
        trust_remote_code = False  # the checkpoint's own code no longer builds; our port replaces it
    register_architectures()
    placement = {}
    if quantize != "none":
        # quantised weights cannot be moved after loading: they are placed as they load
        placement = {"quantization_config": quantization_config(quantize, dtype), "device_map": {"": device}}
    try:
        with _explain_remote_code(spec, trust_remote_code):
            model = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=dtype, trust_remote_code=trust_remote_code, **placement
            )
    except (OSError, ValueError, KeyError) as error:
        raise UserError("ERR_MODEL_LOAD", path=model_dir, error=message_of(error)) from error
    return model if placement else model.to(device)


def quantization_config(quantize: str, dtype):
    """QLoRA's recipe: NF4 with double quantisation (Dettmers et al. 2023), or LLM.int8()."""
    check_quantization_available()
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def leave_out_bitsandbytes() -> None:
    """For a process that will load no quantised model: peft, transformers and TRL import
    bitsandbytes whenever it is installed, and that import costs 1 to 2 s of every trainer's start
    (its CPU kernels import torch's compiler). A None entry in sys.modules is Python's documented
    way to make an import fail, and makes importlib's find_spec report the package absent, which is
    what those libraries ask. Nothing changes once it has been imported."""
    sys.modules.setdefault("bitsandbytes", None)


def check_quantization_available() -> None:
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError("ERR_QUANTIZE_NEEDS_BITSANDBYTES")


class _explain_remote_code:
    """Turn transformers' remote-code refusal into a message that says how to opt in."""

    def __init__(self, spec: ModelSpec, trust_remote_code: bool):
        self.spec = spec
        self.trust_remote_code = trust_remote_code

    def __enter__(self):
        return self

    def __exit__(self, exc_type, error, traceback):
        if error is None or self.trust_remote_code or not isinstance(error, ValueError | OSError):
            return False
        text = str(error)
        if (
            "trust_remote_code" in text
            or "custom code" in text
            or "does not recognize this architecture" in text
        ):
            raise UserError("ERR_NEEDS_REMOTE_CODE", model=self.spec.model_id) from error
        return False


def default_prompt_format(spec: ModelSpec, model_dir: Path, tokenizer) -> str:
    """The catalogue's choice, else what the model itself suggests."""
    if spec.model_id in CATALOGUE:
        return CATALOGUE[spec.model_id].prompt_format
    if model_type(model_dir) == YUAN_MODEL_TYPE:
        return "yuan"
    return "chat_template" if getattr(tokenizer, "chat_template", None) else "plain"
