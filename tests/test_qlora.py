"""QLoRA: the base loaded in 4 or 8 bits through bitsandbytes with LoRA on top, trained by the real
trainer on the CPU (bitsandbytes 0.50 runs both there), and the adapter used with the full-precision
base like any other."""

import importlib.util
import subprocess
import sys

import pytest
import torch

from core import texts
from core.errors import UserError
from registry import adapters, connect, jobs
from tests.conftest import PROJECT_ROOT, SAMPLE, TINY_TRAINING, run_module
from tests.test_pages import _app, app_env  # noqa: F401
from training.config import TrainConfig
from training.jobs import lifecycle
from training.parallel import memory

NEEDS_BITSANDBYTES = pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes is not installed"
)


@NEEDS_BITSANDBYTES
@pytest.mark.slow
def test_a_trainer_that_does_not_quantise_leaves_bitsandbytes_out():
    """Its import costs every trainer 1 to 2 s; a job that loads its base in full precision leaves
    it out, and PEFT still loads. (A job that quantises still imports it: the 4- and 8-bit jobs
    below would be refused without it.)"""
    code = (
        "import sys; from training.trainer import job; from training.config import TrainConfig;"
        "job.import_the_trainer(TrainConfig(quantize='none')); import peft;"
        "print(sys.modules.get('bitsandbytes') is not None, 'peft' in sys.modules)"
    )
    printed = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert printed.split() == ["False", "True"]


@NEEDS_BITSANDBYTES
@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["4bit", "8bit"])
def test_a_quantised_base_trains_an_adapter_that_works_on_the_full_precision_base(
    home, tiny_model_dir, quantize
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.generation import ChatEngine
    from engine.roles import ASSISTANT

    name = f"q-{quantize}"
    result = run_module(
        "training.train",
        *("--base", tiny_model_dir, "--data", SAMPLE, "--name", name, "--quantize", quantize),
        *("--max-steps", "8", *TINY_TRAINING),
        # 4-bit also scores checkpoints and evaluates on held-out examples with the quantised model
        *(("--holdout", "0.1") if quantize == "4bit" else ("--holdout", "0", "--skip-evaluation")),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    db = connect()
    adapter = adapters.get(db, name)
    assert adapter.hyperparameters["quantize"] == quantize
    log = (home / "jobs" / str(adapter.job_id) / "train.log").read_text()
    layer_type = {"4bit": "Linear4bit", "8bit": "Linear8bitLt"}[quantize]
    assert f"base quantised: {quantize} ({layer_type})" in log
    losses = [m["loss"] for m in jobs.metrics_for(db, adapter.job_id)]
    # 8 single-example steps of a random model: the losses are too noisy to fall reliably; what
    # training changed is checked on the logits below
    assert len(losses) == 8 and all(0 < loss < 100 for loss in losses), losses

    # the adapter on the full-precision base, as chat, merge and export use it
    engine = ChatEngine(str(tiny_model_dir), device="cpu")
    decoding = ASSISTANT.decoding.with_changes(do_sample=False, max_new_tokens=6, num_beams=1)
    assert engine.reply("Hello", role=ASSISTANT, adapter=adapter, decoding=decoding)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.tensor([engine.prompt_ids(ASSISTANT, "Hello", adapter=adapter)])
    with torch.no_grad():
        plain = base(ids).logits
        adapted = PeftModel.from_pretrained(base, adapter.path).eval()(ids).logits
    assert (adapted - plain).abs().max() > 1e-4, "the trained LoRA changes the full-precision model"


def test_the_estimate_counts_quantised_weights_in_their_bits(builtin_dir):
    shape = memory.shape_of(builtin_dir)
    plain = memory.Workload(
        dtype_bytes=4, micro_batch=1, longest=256, most_targets=128, lora_r=8, lora_targets=("q_proj",),
        lora_dropout=0.1, checkpointing=False,
    )  # fmt: skip
    full = memory.weight_bytes(shape, plain)
    four = memory.weight_bytes(shape, memory.Workload(**{**plain.__dict__, "quantize": "4bit"}))
    eight = memory.weight_bytes(shape, memory.Workload(**{**plain.__dict__, "quantize": "8bit"}))
    assert full == shape.parameters * 4
    # SmolLM2-135M: 28M embedding parameters stay fp32, the 106M in the layers shrink
    assert four < eight < full
    assert four == pytest.approx(28.3e6 * 4 + 106.2e6 * 0.516, rel=0.02)


def _config(tiny_model_dir, **settings) -> dict:
    return {"base": str(tiny_model_dir), "data": str(SAMPLE), "name": "q", "quantize": "4bit", **settings}


def test_quantising_is_refused_where_it_is_not_wired_before_a_job_exists(db, tiny_model_dir, monkeypatch):
    for settings, what in (
        ({"strategy": "fsdp", "device": "cuda"}, "--strategy fsdp"),
        ({"method": "dpo", "data": str(SAMPLE)}, "DPO"),
        ({"device": "mps"}, "--device mps"),
    ):
        with pytest.raises(UserError) as refused:
            lifecycle.check_quantize(TrainConfig(**_config(tiny_model_dir, **settings)))
        assert what in str(refused.value)
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "bitsandbytes" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(UserError, match="bitsandbytes") as refused:
        lifecycle.check_request(db, _config(tiny_model_dir))
    assert str(refused.value) == texts.ERR_QUANTIZE_NEEDS_BITSANDBYTES
    assert db["jobs"].count == 0
    lifecycle.check_request(
        db, _config(tiny_model_dir, quantize="none")
    )  # without quantising, nothing is needed


def test_the_card_says_what_a_quantised_adapter_was_trained_and_is_used_with(app_env):  # noqa: F811
    from registry.db import to_json

    app_env["adapters"].update(
        adapters.get(app_env, "med-zh").id, {"hyperparameters": to_json({"lora_r": 4, "quantize": "4bit"})}
    )
    shown = [box.value for box in _app("pages/adapters.py").info]
    assert texts.CARD_QUANTISED.format(quantize=texts.QUANTIZE_NAMES["4bit"]) in shown
    assert (
        sum(text == texts.CARD_QUANTISED.format(quantize=texts.QUANTIZE_NAMES["4bit"]) for text in shown) == 1
    )
