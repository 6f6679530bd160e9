"""The memory estimate, the choices the trainer makes from it, and the estimate against measured peaks."""

import json
import re
from dataclasses import replace

import pytest

from core import texts
from core.errors import UserError
from registry import adapters
from registry.db import connect
from tests.conftest import run_module
from tests.test_pages import _app, app_env  # noqa: F401  (fixtures)
from training.config import LORA_TARGETS, check_settings
from training.parallel import memory

GIB = 2**30
TARGETS = tuple(LORA_TARGETS.split(","))


def _workload(**changes) -> memory.Workload:
    workload = memory.Workload(
        dtype_bytes=4,
        micro_batch=1,
        longest=384,
        most_targets=200,
        lora_r=8,
        lora_targets=TARGETS,
        lora_dropout=0.1,
        checkpointing=False,
    )
    return replace(workload, **changes)


def test_the_shape_counts_the_parameters_the_model_has(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    shape = memory.shape_of(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert shape.parameters == model.num_parameters()
    assert (shape.layers, shape.hidden) == (model.config.num_hidden_layers, model.config.hidden_size)


def test_a_folder_without_a_config_is_refused_with_its_path(tmp_path):
    with pytest.raises(UserError, match=str(tmp_path)):
        memory.shape_of(tmp_path)


def test_the_lora_count_matches_peft(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, target_modules=list(TARGETS)))
    trainable, _ = peft.get_nb_trainable_parameters()
    assert memory.lora_parameters(memory.shape_of(tiny_model_dir), _workload()) == trainable


def test_checkpointing_and_smaller_batches_and_shorter_examples_need_less(builtin_dir):
    shape = memory.shape_of(builtin_dir)
    full = memory.estimate(shape, _workload())
    assert memory.estimate(shape, _workload(checkpointing=True)).activations < full.activations / 4
    assert memory.estimate(shape, _workload(micro_batch=4)).activations > 3.5 * full.activations
    assert memory.estimate(shape, _workload(longest=96)).activations < full.activations / 3
    assert memory.estimate(shape, _workload(dtype_bytes=2)).weights == full.weights // 2
    assert memory.estimate(shape, _workload(lora_dropout=0)).activations < full.activations
    # a preference job reads two answers per record and TRL takes logits at every position
    pairs = memory.estimate(shape, _workload(preference=True, all_logits=True))
    assert pairs.activations > 1.9 * full.activations and pairs.logits > 3 * full.logits


def test_checkpointing_stays_off_when_memory_allows_and_comes_on_when_it_does_not(builtin_dir):
    shape = memory.shape_of(builtin_dir)
    without = memory.estimate(shape, _workload()).total
    with_it = memory.estimate(shape, _workload(checkpointing=True)).total
    plenty = memory.choose(
        shape, _workload(), device="cpu", examples_per_step=16, batch_size=4, free=16 * GIB
    )
    assert (plenty.checkpointing, plenty.micro_batch, plenty.accumulation, plenty.verdict) == (
        False,
        1,
        16,
        "fits",
    )
    between = int((without + with_it) / 2 / memory.FITS_SHARE)
    short = memory.choose(shape, _workload(), device="cpu", examples_per_step=16, batch_size=4, free=between)
    assert short.checkpointing and short.verdict == "fits"
    assert "1" in short.reason and memory.mib(between) in short.reason
    # the user's switch wins, and the reason says so
    forced = memory.choose(
        shape,
        _workload(),
        device="cpu",
        examples_per_step=16,
        batch_size=4,
        free=16 * GIB,
        checkpointing="on",
    )
    assert forced.checkpointing and forced.estimate.total == with_it


def test_on_a_gpu_the_micro_batch_shrinks_before_checkpointing_comes_on(builtin_dir):
    shape = memory.shape_of(builtin_dir)
    two = memory.estimate(shape, _workload(micro_batch=2)).total
    four = memory.estimate(shape, _workload(micro_batch=4)).total
    free = int((two + four) / 2 / memory.FITS_SHARE)
    chosen = memory.choose(shape, _workload(), device="cuda", examples_per_step=16, batch_size=4, free=free)
    assert (chosen.checkpointing, chosen.micro_batch, chosen.accumulation) == (False, 2, 8)
    roomy = memory.choose(
        shape, _workload(), device="cuda", examples_per_step=16, batch_size=4, free=64 * GIB
    )
    assert (roomy.micro_batch, roomy.accumulation) == (4, 4)


def test_on_a_gpu_activations_are_bf16_and_the_runtime_stays_in_host_memory(builtin_dir):
    shape = memory.shape_of(builtin_dir)
    cpu = memory.estimate(shape, _workload())
    gpu = memory.estimate(shape, _workload(dtype_bytes=2, on_gpu=True))
    assert gpu.runtime == 0 and cpu.runtime > 0
    assert gpu.activations == pytest.approx(cpu.activations / 2, rel=1e-6)
    assert gpu.backward == pytest.approx(cpu.backward / 2, rel=1e-6)
    assert gpu.weights == cpu.weights // 2


# Peaks measured on one H200 (bench/gpu_suite.sh at fcc8654, 2026-12-04; torch.cuda.max_memory_allocated,
# MiB): full-size random-weight models, ParaMed's first 64 pairs (longest 384 tokens after max_length),
# 4 examples per micro-batch, LoRA r 8 on the seven projections.
_LLAMA_3B = memory.Shape("llama", 3_212_749_824, 3072, 8192, 28, 3072, 1024, 128256)
_YUAN_2B = memory.Shape("yuan", 2_089_000_000, 2048, 8192, 24, 2048, 2048, 135040)
_H200_PEAKS = [
    (_LLAMA_3B, "none", False, 11_815),  # our recipe (packed)
    (_LLAMA_3B, "none", True, 8_858),  # the tutorial recipe
    (_LLAMA_3B, "4bit", False, 9_901),  # QLoRA, packed
    (_YUAN_2B, "4bit", False, 12_109),  # QLoRA, padded and length-grouped
    (_YUAN_2B, "none", False, 10_891),
    (_YUAN_2B, "none", True, 6_685),
]


@pytest.mark.parametrize("shape,quantize,checkpointing,measured_mib", _H200_PEAKS)
def test_the_gpu_estimate_bounds_the_h200_peaks_from_above_within_twice(
    shape, quantize, checkpointing, measured_mib
):
    """The estimate takes each micro-batch at its longest example, so above the peak is expected;
    it was 2.6-3.5x above with fp32 activations and the host's runtime counted on the GPU."""
    workload = _workload(
        dtype_bytes=2,
        micro_batch=4,
        most_targets=202,
        checkpointing=checkpointing,
        quantize=quantize,
        on_gpu=True,
    )
    estimated_mib = memory.estimate(shape, workload).total / 2**20
    assert measured_mib <= estimated_mib <= 2 * measured_mib


def test_what_fits_nowhere_says_so_and_what_to_try(builtin_dir):
    shape = memory.shape_of(builtin_dir)
    chosen = memory.choose(shape, _workload(), device="cpu", examples_per_step=4, batch_size=4, free=GIB // 2)
    assert chosen.verdict == "too_big" and chosen.checkpointing  # the least memory allowed
    assert "max_length" in chosen.reason


def test_a_micro_batch_that_does_not_divide_a_step_is_refused():
    assert check_settings({"batch_size": 4, "grad_accum": 2, "micro_batch": 2}).micro_batch == 2
    with pytest.raises(UserError, match="--micro-batch 3 must divide the examples per step, 8"):
        check_settings({"batch_size": 4, "grad_accum": 2, "micro_batch": 3})


def _long_pairs(path, count: int = 4):
    """Translator records long enough that activations and logits, not the runtime, dominate."""
    sentence = "The patient received insulin and metformin, and her glucose level was checked daily. "
    target = "患者接受了胰岛素和二甲双胍治疗，每天检查血糖水平。"
    rows = [{"input": sentence * 6, "output": target * 10} for _ in range(count)]
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, switch",
    [("builtin", "auto"), ("builtin", "on"), ("builtin:gemma3-270m", "auto")],
    ids=["smollm2-as-chosen", "smollm2-checkpointing", "gemma3"],
)
def test_the_estimate_is_within_a_quarter_of_the_measured_peak(home, tmp_path, model, switch, request):
    """The real trainer on a built-in model: the peak RSS it measured against what it estimated.
    At 256 tokens: the estimate's constants were fitted at 192 and 384 (training/parallel/memory.py)."""
    request.getfixturevalue("gemma_dir" if "gemma" in model else "builtin_dir")
    data = _long_pairs(tmp_path / "long.jsonl")
    result = run_module(
        "training.train",
        *("--base", model, "--data", data, "--name", "measured", "--max-steps", "2", "--holdout", "0"),
        *("--batch-size", "1", "--grad-accum", "2", "--max-length", "256", "--skip-evaluation"),
        *("--gradient-checkpointing", switch),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = adapters.get(connect(home / "registry.db"), "measured").metrics
    assert metrics["memory_verdict"] == "fits"
    ratio = metrics["estimated_peak_mb"] / metrics["peak_rss_mb"]
    assert 0.75 <= ratio <= 1.25, (
        metrics["estimated_peak_mb"],
        metrics["peak_rss_mb"],
        metrics["memory_choice"],
    )


def test_the_training_page_shows_the_estimate_the_choice_and_takes_an_override(app_env):  # noqa: F811
    app = _app("pages/train.py")
    memory_section = next(e for e in app.expander if e.label == texts.MEMORY)
    assert memory_section.success and not app.error
    shown = memory_section.success[0].value
    assert (
        "fits" in shown
        and "Gradient checkpointing off" in shown
        and texts.MEMORY_CHECKPOINTING_NOT_NEEDED in shown
    )
    assert any("for the longest example" in c.value for c in memory_section.caption)
    app.selectbox(key="setting-gradient_checkpointing").set_value("on").run()
    shown = next(e for e in app.expander if e.label == texts.MEMORY).success[0].value
    assert "Gradient checkpointing on" in shown and "as you set it: on" in shown
    app.number_input(key="setting-micro_batch").set_value(3).run()
    assert any("--micro-batch 3 must divide the examples per step, 16" in e.value for e in app.error)


def test_quantising_on_the_page_shrinks_the_weights_in_the_estimate(app_env):  # noqa: F811
    app = _app("pages/train.py")
    app.selectbox(key="train-base").set_value("builtin").run()  # the tiny model's layers round to 0 MiB

    def weights_part() -> float:
        caption = next(c.value for c in next(e for e in app.expander if e.label == texts.MEMORY).caption)
        found = re.search(re.escape(texts.MEMORY_PARTS["weights"]) + r" ([\d,]+) MiB", caption)
        return float(found.group(1).replace(",", ""))

    full = weights_part()
    app.selectbox(key="setting-quantize").set_value("4bit").run()
    assert weights_part() < full and not app.error


def test_fsdp_and_zero3_count_each_process_a_share_of_the_weights(builtin_dir):
    def weights(**settings) -> int:
        config = check_settings({"processes": 2, "batch_size": 1, "grad_accum": 1, **settings})
        choice = memory.choose_for_config(config, builtin_dir, 384, 200, "cpu", 4, free=64 * GIB)
        return choice.estimate.weights

    whole = weights(strategy="ddp")
    assert weights(strategy="fsdp") == weights(strategy="zero3") == whole // 2
    assert weights(strategy="fsdp", processes=4) == whole // 4
