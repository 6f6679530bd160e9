"""Merge an adapter into its base model: a standalone Hugging Face model folder.

    python -m exporters.merge --adapter med-zh-1 --out exports/med-zh-1-merged [--dtype fp32|bf16|fp16]

The folder holds safetensors weights with the LoRA folded in, the tokenizer (its chat template
included), `translator_prompt.json` (the prompt format and role the adapter was trained with, and
the exact prompt our formats module renders), a `generation_config.json` carrying the role's
decoding preset and stop tokens, and a model card (README.md). It is written to a temporary folder
and renamed into place, so it exists complete or not at all. A merged Yuan model keeps our own
model type: it loads with `import engine` and no remote code.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from core import errors
from core.errors import UserError
from engine import catalogue, conversion, formats, loading, models
from engine.adapters import check_loadable
from registry import adapters as adapter_rows
from registry import connect
from registry import evaluations as evaluation_rows
from registry.adapters import Adapter
from studio import accounts
from studio.roles import get_role

DTYPES = ("fp32", "bf16", "fp16")
PROMPT_FILE = "translator_prompt.json"
EXAMPLE_INPUT = "{input}"
LICENSES = {"builtin": "apache-2.0", "builtin:gemma3-270m": "gemma"}


def merge(db, adapter_name: str, out: str | Path, *, dtype: str = "fp32", progress=None, stage=None) -> Path:
    """Write the merged model of `adapter_name` to `out` (which must not exist) and return it.
    `stage(name)` hears each step as it starts: load, merge, write."""
    import torch
    from peft import PeftModel

    if dtype not in DTYPES:
        raise UserError("ERR_MERGE_DTYPE", dtype=dtype, choices=", ".join(DTYPES))
    stage = stage or (lambda name: None)
    adapter, out = export_target(db, adapter_name, out)
    folder = check_loadable(adapter, adapter.base_model)
    stage("load")
    spec = catalogue.parse_model_id(adapter.base_model)
    model_dir = models.resolve_model_dir(spec, progress)
    role = get_role(db, adapter.role)
    tokenizer = loading.load_tokenizer(model_dir, spec)
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    base = loading.load_model(model_dir, spec, device="cpu", dtype=torch_dtype)
    stage("merge")
    try:
        merged = PeftModel.from_pretrained(base, folder, is_trainable=False).merge_and_unload()
    except (RuntimeError, ValueError, KeyError, OSError) as error:  # weights that do not fit their config
        raise UserError(
            "ERR_ADAPTER_LOAD", name=adapter_name, folder=folder, error=errors.message_of(error)
        ) from error
    if getattr(merged.config, "model_type", "") == loading.YUAN_MODEL_TYPE and hasattr(
        merged.config, "auto_map"
    ):
        del merged.config.auto_map  # the checkpoint's remote code: our registered type replaces it
    staging = out.with_name(f".tmp-{out.name}")
    stage("write")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        merged.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        _generation_config(merged, tokenizer, adapter, role).save_pretrained(staging)
        prompt = prompt_description(tokenizer, adapter, role)
        (staging / PROMPT_FILE).write_text(json.dumps(prompt, ensure_ascii=False, indent=2), encoding="utf-8")
        terms = conversion.builtin_license(adapter.base_model)
        if terms is not None and terms.is_file():
            shutil.copy2(terms, staging / terms.name)
        card = model_card(adapter, role, prompt, evaluation_rows.for_adapter(db, adapter.id), dtype)
        (staging / "README.md").write_text(card, encoding="utf-8")
        staging.rename(out)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError("ERR_EXPORT_WRITE", path=out, error=errors.message_of(error)) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def export_target(db, adapter_name: str, out: str | Path) -> tuple[dict, Path]:
    """The adapter row and the absolute output path of an export, refused before any work when
    the adapter is unknown or the output exists (an export never overwrites)."""
    adapter = adapter_rows.require(db, adapter_name)
    out = Path(out).expanduser().resolve()
    if out.exists():
        raise UserError("ERR_EXPORT_EXISTS", path=out)
    return adapter, out


def _generation_config(model, tokenizer, adapter: Adapter, role):
    from transformers import GenerationConfig

    decoding = role.decoding
    stop_ids = formats.stop_token_ids(tokenizer, adapter.prompt_format, model)
    settings = {
        "do_sample": decoding.do_sample,
        "max_new_tokens": decoding.max_new_tokens,
        "repetition_penalty": decoding.repetition_penalty,
        "eos_token_id": stop_ids[0] if len(stop_ids) == 1 else stop_ids,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if tokenizer.bos_token_id is not None:
        settings["bos_token_id"] = tokenizer.bos_token_id
    if decoding.do_sample:
        settings.update(temperature=decoding.temperature, top_p=decoding.top_p)
    elif decoding.beams:
        settings.update(
            num_beams=decoding.num_beams, length_penalty=decoding.length_penalty, early_stopping=True
        )
    return GenerationConfig(**settings)


def prompt_description(tokenizer, adapter: Adapter, role) -> dict:
    """What a runtime needs to prompt the merged model as it was trained: the format, the role's
    system prompt and instruction, and the exact prompt text for one user message."""
    text = formats.user_text(role, "", EXAMPLE_INPUT)
    ids = formats.prompt_ids(tokenizer, adapter.prompt_format, role, text)
    return {
        "prompt_format": adapter.prompt_format,
        "role": role.name,
        "system_prompt": role.system_prompt,
        "instruction": role.instruction,
        "prompt_for_one_message": tokenizer.decode(ids, skip_special_tokens=False),
        "stop_tokens": [
            tokenizer.convert_ids_to_tokens(i)
            for i in formats.stop_token_ids(tokenizer, adapter.prompt_format)
        ],
        "decoding": role.decoding.as_dict(),
    }


def model_card(
    adapter: Adapter, role, prompt: dict, evaluations: list, dtype: str, *, merged: bool = True
) -> str:
    """The README.md of a merged model (or, with merged=False, of the adapter alone): where it comes
    from, how it was trained, what it scored."""
    base = adapter.base_model
    license_id = LICENSES.get(base, "other")
    hyper = adapter.hyperparameters
    if merged:
        title = f"# {adapter.name} (merged)"
        about = (
            f"LoRA adapter `{adapter.name}` folded into its base model `{base}` ({dtype}), exported by "
            "翻译机器人 (the LoRA adapter studio)."
        )
    else:
        title = f"# {adapter.name} (LoRA adapter)"
        about = (
            f"A PEFT LoRA adapter (safetensors) for the base model `{base}`, trained and exported by "
            "翻译机器人 (the LoRA adapter studio). Load it with `PeftModel.from_pretrained(base, this_repo)`."
        )
    lines = [
        "---",
        f"license: {license_id}",
        f"library_name: {'transformers' if merged else 'peft'}",
        f"base_model: {base}",
        f"tags: [lora, {'merged, ' if merged else ''}translator-studio]",
        "---",
        "",
        title,
        "",
        about,
        "",
        "## Base model",
        f"- id: `{base}`",
        f"- revision: {_revision(base)}",
        f"- license: {license_line(base)}",
        "",
        "## Training",
        f"- role: `{role.name}`; prompt format: `{adapter.prompt_format}`",
        f"- dataset: `{adapter.dataset_name}`, fingerprint `{adapter.dataset_fingerprint}`, "
        f"{adapter.num_examples} examples",
        "- hyperparameters: " + ", ".join(f"{key} {value}" for key, value in sorted(hyper.items())),
    ]
    if "checkpoint_step" in adapter.metrics:
        lines.append(
            f"- published checkpoint: step {adapter.metrics['checkpoint_step']} "
            f"(chosen by {adapter.metrics.get('chosen_by')})"
        )
    lines += ["", "## Scores"]
    if not evaluations:
        lines.append("Not evaluated.")
    for row in evaluations:
        scores = ", ".join(f"{key} {value:.2f}" for key, value in row.scores.items() if key != "tokens")
        lines.append(
            f"- {row.dataset_name} [{row.dataset_fingerprint}], {row.num_examples} examples: "
            f"{scores} (`{row.signature}`)"
        )
    lines += [
        "",
        "## Prompt",
        f"Trained with this prompt for one message (`{PROMPT_FILE}` has the details):",
        "",
        "```",
        prompt["prompt_for_one_message"],
        "```",
        "",
        f"Decoding preset (generation_config.json): {role.decoding.describe()}",
        "",
    ]
    return "\n".join(lines)


def _revision(base: str) -> str:
    builtin = catalogue.BUILTIN_MODELS.get(base)
    if builtin is not None:
        return f"the package {builtin.requirement.split()[0]}"
    return "not recorded (the newest snapshot at download time)"


def license_line(base: str) -> str:
    if base == "builtin:gemma3-270m":
        return "Gemma Terms of Use (GEMMA_TERMS.html, copied next to this card)"
    if base == "builtin":
        return "Apache-2.0 (SmolLM2-135M-Instruct)"
    return "see the base model's own card"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exporters.merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True, help="registered adapter to merge")
    parser.add_argument("--out", required=True, help="folder to write (must not exist)")
    parser.add_argument("--dtype", default="fp32", choices=DTYPES, help="weights' dtype (default fp32)")
    args = parser.parse_args(argv)
    try:
        accounts.cli_adapter(connect(), args.adapter, change=True)
        out = merge(connect(), args.adapter, args.out, dtype=args.dtype)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"merged model written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
