"""Ollama Modelfiles: the template renders exactly the prompt our formats module produces."""

import pytest
from transformers import AutoTokenizer

from engine import formats
from engine.roles import ASSISTANT, PERSONA, TRANSLATOR
from exporters import ollama
from tests.conftest import adapter_row

MESSAGES = ["The patient has a fever.", "你是谁？", 'Quotes " and {{ braces }} stay text.']


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    """SmolLM2's tokenizer (with its chat template) plus Yuan's <sep> and <eod>."""
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("prompt_format", formats.FORMATS)
@pytest.mark.parametrize("role", [TRANSLATOR, PERSONA, ASSISTANT], ids=lambda r: r.name)
def test_the_template_renders_the_prompt_the_adapter_was_trained_on(tokenizer, prompt_format, role):
    template = ollama.template(tokenizer, prompt_format, role)
    assert template.count("{{ .Prompt }}") == 1
    assert ("{{ .System }}" in template) == (bool(role.system_prompt) and prompt_format != "yuan")
    for message in MESSAGES:
        text = formats.user_text(role, "", message)
        rendered = ollama.render(template, system=role.system_prompt, prompt=text)
        assert rendered == formats.prompt_text(tokenizer, prompt_format, role, text)
        bos = formats._bos(tokenizer) if prompt_format == "plain" else []
        assert bos + tokenizer(rendered, add_special_tokens=False)["input_ids"] == formats.prompt_ids(
            tokenizer, prompt_format, role, text
        ), "llama.cpp adds the begin token itself, as the GGUF's tokenizer says"


def test_the_pinned_prompts_of_each_family(tokenizer):
    assert ollama.template(tokenizer, "yuan", TRANSLATOR) == "{{ .Prompt }}<sep>"
    assert ollama.template(tokenizer, "plain", PERSONA) == "{{ .System }}\n\n{{ .Prompt }}\n\n"
    assert ollama.template(tokenizer, "chat_template", PERSONA) == (
        "<|im_start|>system\n{{ .System }}<|im_end|>\n<|im_start|>user\n{{ .Prompt }}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_the_modelfile_carries_system_stops_and_the_decoding_preset(tokenizer):
    persona = adapter_row(name="huanhuan", prompt_format="chat_template")
    text = ollama.modelfile(tokenizer, persona, PERSONA, gguf="./huanhuan.gguf")
    assert "FROM ./huanhuan.gguf\n" in text and "ADAPTER" not in text
    assert 'SYSTEM """现在你要扮演皇帝身边的女人--甄嬛"""' in text
    assert f'PARAMETER stop "{tokenizer.eos_token}"' in text
    for line in ("PARAMETER temperature 0.5", "PARAMETER top_p 0.9", "PARAMETER repeat_penalty 1.1"):
        assert line in text
    translator = adapter_row(name="med", prompt_format="yuan")
    text = ollama.modelfile(
        tokenizer, translator, TRANSLATOR, gguf="/models/base.gguf", lora="./med-lora.gguf"
    )
    assert "FROM /models/base.gguf\nADAPTER ./med-lora.gguf\n" in text
    assert 'PARAMETER stop "<eod>"' in text and "PARAMETER temperature 0\n" in text and "top_p" not in text
    assert 'TEMPLATE """{{ .Prompt }}<sep>"""' in text
