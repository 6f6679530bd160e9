"""An Ollama Modelfile for an exported GGUF: the prompt exactly as the adapter was trained on.

The TEMPLATE is our own prompt (engine/formats.py `prompt_text`) for the adapter's format and role,
rendered once with markers where the system prompt and the user's message go, which then become
Ollama's `{{ .System }}` and `{{ .Prompt }}`; the begin token is left to llama.cpp, which adds it
as the GGUF's tokenizer says. SYSTEM is the role's system prompt, `stop` the format's end tokens,
and the role's decoding preset becomes PARAMETERs (greedy: temperature 0).
"""

from dataclasses import replace
from pathlib import Path

from core.errors import UserError
from engine import formats
from engine.roles import Role
from registry.adapters import Adapter

SYSTEM_MARK, PROMPT_MARK = "\u2983SYSTEM\u2984", "\u2983PROMPT\u2984"


def template(tokenizer, prompt_format: str, role: Role) -> str:
    """Ollama's TEMPLATE (Go text/template) for one message, as `formats.prompt_text` renders it."""
    marked = replace(role, system_prompt=SYSTEM_MARK if role.system_prompt else "")
    rendered = formats.prompt_text(tokenizer, prompt_format, marked, formats.user_text(role, "", PROMPT_MARK))
    if rendered.count(PROMPT_MARK) != 1 or rendered.count(SYSTEM_MARK) > 1:
        raise UserError("ERR_OLLAMA_TEMPLATE", format=prompt_format)
    return rendered.replace(SYSTEM_MARK, "{{ .System }}").replace(PROMPT_MARK, "{{ .Prompt }}")


def render(template_text: str, *, system: str, prompt: str) -> str:
    """What Ollama makes of our template for one message: it uses only these two fields."""
    return template_text.replace("{{ .System }}", system).replace("{{ .Prompt }}", prompt)


def modelfile(
    tokenizer, adapter: Adapter, role: Role, *, gguf: str, lora: str | None = None, model=None
) -> str:
    """The Modelfile text: FROM the merged GGUF, or FROM a base GGUF with the LoRA as ADAPTER."""
    prompt_template = template(tokenizer, adapter.prompt_format, role)
    if '"""' in prompt_template or '"""' in role.system_prompt:
        raise UserError("ERR_OLLAMA_TEMPLATE", format=adapter.prompt_format)
    lines = [f"# {adapter.name}: exported by 翻译机器人 ({adapter.prompt_format} format, role {role.name})"]
    lines.append(f"FROM {gguf}")
    if lora:
        lines.append(f"ADAPTER {lora}")
    lines.append(f'TEMPLATE """{prompt_template}"""')
    if "{{ .System }}" in prompt_template:  # the yuan format has no system turn
        lines.append(f'SYSTEM """{role.system_prompt}"""')
    for token_id in formats.stop_token_ids(tokenizer, adapter.prompt_format, model):
        token = tokenizer.convert_ids_to_tokens(token_id)
        lines.append(f"PARAMETER stop {_quoted(token)}")
    decoding = role.decoding
    if decoding.beams:  # Ollama (llama.cpp's sampler) has no beam search
        lines.append(
            f"# the role searches with {decoding.num_beams} beams in the studio; Ollama decodes greedily"
        )
    lines.append(f"PARAMETER temperature {decoding.temperature if decoding.do_sample else 0:g}")
    if decoding.do_sample:
        lines.append(f"PARAMETER top_p {decoding.top_p:g}")
    lines.append(f"PARAMETER repeat_penalty {decoding.repetition_penalty:g}")
    lines.append(f"PARAMETER num_predict {decoding.max_new_tokens}")
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write(path: Path, text: str) -> Path:
    staging = path.with_name(f".tmp-{path.name}")
    staging.write_text(text, encoding="utf-8")
    staging.replace(path)
    return path
