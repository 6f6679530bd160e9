"""The vLLM command, and every reason vLLM would refuse an adapter, said before anyone tries."""

import shlex
from dataclasses import replace

import pytest

from core import texts
from core.errors import UserError
from exporters import vllm
from registry import adapters
from tests.conftest import adapter_row, lora_folder, register_adapter, write_json


def _adapter(db, home, name, base="builtin", **config):
    config = {"r": 8, "target_modules": ["q_proj", "v_proj"], **config}
    return register_adapter(db, name, lora_folder(home / "adapters" / name, **config), base)


def test_the_command_serves_each_servable_adapter_of_one_base(db, home, builtin_dir):
    first = _adapter(db, home, "med-zh", r=8)
    second = _adapter(db, home, "huanhuan", r=16)
    line = vllm.command([first, second], port=8001)
    words = shlex.split(line)
    assert words[:3] == ["vllm", "serve", str(builtin_dir)]
    assert words[words.index("--lora-modules") + 1 : words.index("--lora-modules") + 3] == [
        f"med-zh={first.path}",
        f"huanhuan={second.path}",
    ]
    assert words[words.index("--max-lora-rank") + 1] == "16"
    assert words[words.index("--max-loras") + 1] == "2"
    assert "--enable-lora" in words and words[words.index("--host") + 1] == "127.0.0.1"
    assert words[-1] == "8001"


def test_a_modelscope_base_is_named_by_its_repo_and_fetched_from_modelscope(db, home):
    adapter = _adapter(db, home, "persona-1", base="modelscope:LLM-Research/Llama-3.2-3B-Instruct")
    words = shlex.split(vllm.command([adapter]))
    assert words[:4] == ["VLLM_USE_MODELSCOPE=True", "vllm", "serve", "LLM-Research/Llama-3.2-3B-Instruct"]


def test_each_refusal_is_explained(db, home, tiny_model_dir):
    rank = vllm.verdict(_adapter(db, home, "odd-rank", r=4))
    assert rank.problems == [texts.VLLM_RANK.format(rank=4, ranks="1, 8, 16, 32, 64, 128, 256, 320, 512")]
    embeddings = vllm.verdict(_adapter(db, home, "embed", target_modules=["q_proj", "embed_tokens"]))
    assert embeddings.problems == [texts.VLLM_EMBEDDINGS.format(modules="embed_tokens")]
    yuan = vllm.verdict(
        replace(_adapter(db, home, "yuan-zh", base=str(tiny_model_dir)), prompt_format="yuan")
    )
    assert "merge" in yuan.problems[0] and "Yuan2" in yuan.problems[0]

    tokens = _adapter(db, home, "new-tokens")
    write_json(home / "adapters" / "new-tokens" / "added_tokens.json", {"<think>": 49152})
    assert vllm.verdict(tokens).problems == [texts.VLLM_ADDED_TOKENS]

    # modules_to_save never reaches the registry (chat refuses it too); its config is still judged
    whole = adapter_row(name="whole", path=str(lora_folder(home / "whole", r=8, modules_to_save=["lm_head"])))
    assert vllm.verdict(whole).problems == [texts.VLLM_WHOLE_MODULES]

    fine = _adapter(db, home, "fine")
    assert vllm.verdict(fine).servable
    with pytest.raises(UserError, match="odd-rank: LoRA rank r=4"):
        vllm.command([fine, adapters.get(db, "odd-rank")])


def test_one_command_loads_one_base(db, home, tiny_model_dir):
    first = _adapter(db, home, "one")
    other = _adapter(db, home, "two", base=str(tiny_model_dir))
    with pytest.raises(UserError, match="One vllm serve command loads one base model"):
        vllm.command([first, other])
