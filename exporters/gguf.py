"""GGUF for llama.cpp and Ollama: the merged model, or the adapter alone for `llama-cli --lora`.

    python -m exporters.gguf --adapter med-zh-1 --out med-zh-1.gguf --type f16
    python -m exporters.gguf --adapter med-zh-1 --out med-zh-1-lora.gguf --lora

Both go through llama.cpp's own converters (exporters/llama_cpp.py). The file is written under a
temporary name and renamed whole; an existing file is refused. Next to it goes an Ollama Modelfile
(exporters/ollama.py): always for the merged model; for the LoRA, when the base model's GGUF is
given; and a README saying how to prompt and run it (the prompt written out where the file has no
chat template). Yuan2 is not an architecture llama.cpp knows: export the merged model
(exporters.merge) instead.
"""

import argparse
import shutil
import sys
from pathlib import Path

from core import errors
from core.errors import UserError
from engine import catalogue, formats, loading, models
from engine.adapters import check_loadable
from exporters import llama_cpp, merge, ollama
from registry import connect
from registry.adapters import Adapter
from studio import accounts

TYPES = ("f32", "f16", "bf16", "q8_0")


def export_merged(db, adapter_name: str, out: str | Path, *, outtype: str = "f16", stage=None) -> Path:
    """The adapter folded into its base, as one GGUF file of `outtype`; `stage` as for merge."""
    adapter, out = check_export(db, adapter_name, out, outtype)
    merged = out.with_name(f".tmp-merged-{out.name}")
    shutil.rmtree(merged, ignore_errors=True)
    try:
        merge.merge(db, adapter_name, merged, dtype="fp32", stage=stage)
        if stage is not None:
            stage("convert")
        _convert(out, "convert_hf_to_gguf.py", str(merged), "--outtype", outtype)
    finally:
        shutil.rmtree(merged, ignore_errors=True)
    _loads_or_removed(out)
    _write_modelfile(db, adapter, out, gguf=f"./{out.name}")
    _write_readme(db, adapter, out, outtype=outtype, lora=False)
    return out


def modelfile_path(gguf_file: Path) -> Path:
    return gguf_file.with_name(f"{gguf_file.stem}.Modelfile")


def _write_modelfile(db, adapter: Adapter, gguf_file: Path, *, gguf: str, lora: str | None = None) -> Path:
    """`ollama create NAME -f <file>.Modelfile` next to the GGUF (see exporters/ollama.py)."""
    from studio.roles import get_role

    spec = catalogue.parse_model_id(adapter.base_model)
    tokenizer = loading.load_tokenizer(models.resolve_model_dir(spec), spec)
    text = ollama.modelfile(tokenizer, adapter, get_role(db, adapter.role), gguf=gguf, lora=lora)
    return ollama.write(modelfile_path(gguf_file), text)


def readme_path(gguf_file: Path) -> Path:
    return gguf_file.with_name(f"{gguf_file.stem}.README.md")


TEXT_MARK = "{text}"  # where the README's prompt takes the user's text


def _write_readme(
    db, adapter: Adapter, gguf_file: Path, *, outtype: str, lora: bool, base_gguf: str | None = None
) -> Path:
    """How to call the file: with its chat template through a chat endpoint, or (plain and other
    formats without one) with the prompt text written out, as the adapter was trained."""
    from studio.roles import get_role

    spec = catalogue.parse_model_id(adapter.base_model)
    tokenizer = loading.load_tokenizer(models.resolve_model_dir(spec), spec)
    role = get_role(db, adapter.role)
    prompt = ollama.render(
        ollama.template(tokenizer, adapter.prompt_format, role), system=role.system_prompt, prompt=TEXT_MARK
    )
    stops = [
        tokenizer.convert_ids_to_tokens(i) for i in formats.stop_token_ids(tokenizer, adapter.prompt_format)
    ]
    model = (
        f"--model {base_gguf or '<the base GGUF>'} --lora_path {gguf_file.name}"
        if lora
        else f"--model {gguf_file.name}"
    )
    decoding = role.decoding
    lines = [
        f"# {gguf_file.name}",
        "",
        f"Exported by 翻译机器人: adapter `{adapter.name}` (role `{role.name}`, prompt format "
        f"`{adapter.prompt_format}`) on `{adapter.base_model}`, "
        + (
            f"as a GGUF LoRA ({outtype}) for the base model's GGUF."
            if lora
            else f"merged into its base ({outtype})."
        ),
        "",
        "## How to prompt it",
    ]
    if adapter.prompt_format == "chat_template":
        lines += [
            "The file carries the chat template the adapter was trained with: send messages to a chat",
            "endpoint (`/v1/chat/completions`) and llama.cpp formats them as training did.",
        ]
    else:
        lines += [
            f"The `{adapter.prompt_format}` format has no chat template in the file: send the prompt text",
            "yourself (`/v1/completions`, or `llama-cli -p`), exactly as below with your text in place of",
            f"`{TEXT_MARK}` (the Modelfile's TEMPLATE is the same prompt):",
        ]
    lines += ["", "```text", prompt, "```", ""]
    lines.append(f"Stop at: {', '.join(f'`{stop}`' for stop in stops)}.")
    sampling = (
        f"temperature {decoding.temperature:g}, top_p {decoding.top_p:g}"
        if decoding.do_sample
        else "greedy (temperature 0)"
    )
    lines.append(f"The role's decoding: {sampling}, repeat_penalty {decoding.repetition_penalty:g}.")
    lines += [
        "",
        "## Run it",
        f"- llama.cpp's Python server: `python -m llama_cpp.server {model} --model_alias {adapter.name}`",
        f"- Ollama: `ollama create {adapter.name} -f {modelfile_path(gguf_file).name}`"
        + (
            ""
            if modelfile_path(gguf_file).is_file()
            else " (export again with the base GGUF to get the Modelfile)"
        ),
    ]
    return ollama.write(readme_path(gguf_file), "\n".join(lines) + "\n")


def export_lora(
    db, adapter_name: str, out: str | Path, *, outtype: str = "f32", base_gguf: str | None = None
) -> Path:
    """The adapter alone, as a GGUF LoRA for llama.cpp's `--lora` next to the base model's GGUF;
    with `base_gguf` (the base model as GGUF), also a Modelfile with it as FROM and this as ADAPTER."""
    adapter, out = check_export(db, adapter_name, out, outtype)
    folder = check_loadable(adapter, adapter.base_model)
    base_dir = models.resolve_model_dir(catalogue.parse_model_id(adapter.base_model))
    _convert(out, "convert_lora_to_gguf.py", "--base", str(base_dir), "--outtype", outtype, str(folder))
    if base_gguf:
        _loads_or_removed(Path(base_gguf).expanduser().resolve(), lora=out)
        _write_modelfile(
            db, adapter, out, gguf=str(Path(base_gguf).expanduser().resolve()), lora=f"./{out.name}"
        )
    _write_readme(db, adapter, out, outtype=outtype, lora=True, base_gguf=base_gguf)
    return out


def _loads_or_removed(model: Path, lora: Path | None = None) -> None:
    """An export llama.cpp cannot load is found here, not at the user's end, and not left behind."""
    try:
        llama_cpp.check_loads(model, lora)
    except UserError:
        (lora or model).unlink(missing_ok=True)
        raise


def check_export(db, adapter_name: str, out: str | Path, outtype: str) -> tuple[dict, Path]:
    if outtype not in TYPES:
        raise UserError("ERR_GGUF_TYPE", type=outtype, choices=", ".join(TYPES))
    adapter, out = merge.export_target(db, adapter_name, out)
    if adapter.prompt_format == "yuan" or _model_type(adapter) == loading.YUAN_MODEL_TYPE:
        raise UserError("ERR_GGUF_YUAN", name=adapter_name)
    llama_cpp.converters()  # say it is missing before any work
    return adapter, out


def _model_type(adapter: Adapter) -> str | None:
    spec = catalogue.parse_model_id(adapter.base_model)
    if spec.source != "local":
        return None
    try:
        return loading.check_model_folder(Path(spec.name), needs=())
    except UserError:
        return None


def _convert(out: Path, script: str, *args: str) -> None:
    staging = out.with_name(f".tmp-{out.name}")
    staging.unlink(missing_ok=True)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        llama_cpp.run_converter(script, *args, "--outfile", str(staging))
        staging.rename(out)
    except OSError as error:
        raise UserError("ERR_EXPORT_WRITE", path=out, error=errors.message_of(error)) from error
    finally:
        staging.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exporters.gguf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True, help="registered adapter to export")
    parser.add_argument("--out", required=True, help="GGUF file to write (must not exist)")
    parser.add_argument("--type", default=None, choices=TYPES, help="f16 merged, f32 LoRA by default")
    parser.add_argument("--lora", action="store_true", help="the adapter alone, for llama.cpp's --lora")
    parser.add_argument("--base-gguf", help="with --lora: the base model's GGUF, for the Modelfile's FROM")
    args = parser.parse_args(argv)
    try:
        accounts.cli_adapter(connect(), args.adapter, change=True)
        if args.lora:
            out = export_lora(
                connect(), args.adapter, args.out, outtype=args.type or "f32", base_gguf=args.base_gguf
            )
        else:
            out = export_merged(connect(), args.adapter, args.out, outtype=args.type or "f16")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"GGUF written to {out}")
    if modelfile_path(out).is_file():
        print(f"Ollama: ollama create {args.adapter} -f {modelfile_path(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
