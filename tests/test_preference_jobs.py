"""Preference jobs are jobs: real trainer processes on the tiny model that continue a parent adapter
(DPO, ORPO, KTO through TRL), score every checkpoint by held-out reward accuracy, publish a child
with its lineage, cancel, die and resume, and run on two processes with the losses of one. The
translator's-mistakes builder is a detached task like an export."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.home import PROJECT_ROOT
from engine import catalogue
from registry import adapters, checkpoints, evaluations, jobs, tasks
from studio import supervisor
from tests.conftest import make_adapter, register_adapter, run_module, wait_for_step, wait_until
from training.data import pairs
from training.data.datasets import load_dataset
from training.evaluation import mistakes
from training.jobs import lifecycle
from training.parallel import launchers
from training.trainer import preference
from training.trainer.fit import adapt
from training.trainer.progress import COMPLETE_MARKER

pytestmark = pytest.mark.slow
PAIRS_SAMPLE = PROJECT_ROOT / "data" / "translator_pairs.jsonl"
SAMPLE = PROJECT_ROOT / "data" / "translator_sample.jsonl"
QUICK = ("--batch-size", "1", "--grad-accum", "2", "--lr", "1e-3")


@pytest.fixture
def parent(db, home, tiny_model_dir):
    """A translator adapter on the tiny model, as a finished SFT job would leave one."""
    folder = make_adapter(tiny_model_dir, home / "adapters" / "med-zh", seed=1)
    base = catalogue.parse_model_id(str(tiny_model_dir)).model_id
    return register_adapter(db, "med-zh", folder, base, role="translator", prompt_format="chat_template")


def _preference_job(name: str, *extra: str, method="dpo"):
    return run_module(
        "training.train", "--method", method, "--parent", "med-zh", "--data", PAIRS_SAMPLE, "--name", name,
        *QUICK, *extra,
    )  # fmt: skip


def test_a_dpo_job_continues_its_parent_scores_checkpoints_and_publishes_a_child(db, home, parent):
    done = _preference_job("med-zh-dpo", "--max-steps", "4", "--save-steps", "2", "--holdout", "0.25")
    assert done.returncode == 0, done.stderr[-3000:]
    child = adapters.get(db, "med-zh-dpo")
    assert (child.parent_id, child.parent_name, child.method) == (parent.id, "med-zh", "dpo")
    assert child.data_source["kind"] == "file" and child.data_source["records"] == 24
    assert child.hyperparameters["loss_type"] == "sigmoid" and child.hyperparameters["beta"] == 0.1
    assert sorted(p.name for p in Path(child.path).iterdir() if p.is_dir()) == []  # no "ref" adapter in it

    scored = checkpoints.for_job(db, child.job_id)
    assert [row.step for row in scored] == [2, 4] and {row.kind for row in scored} == {"preference"}
    assert set(scored[0].scores) == {"accuracy", "margin", "chosen_reward", "rejected_reward"}
    assert 0 <= scored[-1].scores["accuracy"] <= 1 and scored[0].num_examples == 6
    assert child.metrics["chosen_by"] == "accuracy"
    steps = jobs.metrics_for(db, child.job_id)
    assert [m["step"] for m in steps] == [1, 2, 3, 4]
    assert "rewards/margins" in steps[-1]["extra"] and "rewards/accuracies" in steps[-1]["extra"]
    assert abs(steps[0]["loss"] - 0.6931) < 1e-3  # the first step's policy is its reference: log 2

    # the held-out prompts with their preferred answers, scored for child, base and parent alike
    (mine,) = evaluations.for_adapter(db, child.id)
    assert mine.num_examples == 6 and mine.kind == "translation"
    assert [row.adapter_name for row in evaluations.of_other_adapters(db, mine)] == ["med-zh"]
    assert evaluations.base_counterpart(db, mine) is not None
    weights = load_file(Path(child.path) / "adapter_model.safetensors")
    before = load_file(Path(parent.path) / "adapter_model.safetensors")
    assert weights.keys() == before.keys()
    assert any(not torch.equal(weights[key], before[key]) for key in weights)  # it trained on
    assert load_file(Path(parent.path) / "adapter_model.safetensors").keys() == before.keys()


def test_the_reference_is_a_frozen_copy_of_the_parent_on_the_same_base_weights(db, home, parent):
    """No second model: TRL's reference is the parent's LoRA copied beside the trained one."""
    plan = lifecycle.check_request(
        db, {"method": "dpo", "parent": "med-zh", "data": str(PAIRS_SAMPLE), "name": "c"}
    )
    from engine import loading

    model = loading.load_model(plan.model_dir, plan.spec, device="cpu", dtype=torch.float32)
    base_parameters = sum(p.numel() for p in model.parameters())
    model = adapt(model, plan.config, plan)
    arguments = dict(output_dir=str(home / "out"), use_cpu=True, report_to="none", max_steps=1)
    trainer = preference.make_trainer(model, {**arguments, "gradient_checkpointing": False}, plan, [])
    assert trainer.ref_model is None and set(model.peft_config) == {"default", "ref"}
    lora = [p for name, p in model.named_parameters() if "lora_" in name]
    assert sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name) == base_parameters
    reference = {name: p for name, p in model.named_parameters() if ".ref." in name}
    assert reference and not any(p.requires_grad for p in reference.values())
    parent_weights = load_file(Path(parent.path) / "adapter_model.safetensors")
    for name, weight in parent_weights.items():
        copied = name.replace(".weight", ".ref.weight")
        assert torch.equal(reference[copied], weight), name
    assert len(lora) == 2 * len(parent_weights)


@pytest.mark.parametrize("method", ["orpo", "kto"])
def test_orpo_and_kto_jobs_publish_a_child_of_their_method(db, home, parent, method):
    done = _preference_job(f"med-zh-{method}", "--max-steps", "2", "--holdout", "0.25", method=method)
    assert done.returncode == 0, done.stderr[-3000:]
    child = adapters.get(db, f"med-zh-{method}")
    assert child.method == method and child.parent_name == "med-zh"
    (scored,) = checkpoints.for_job(db, child.job_id)
    assert scored.kind == "preference" and 0 <= scored.scores["accuracy"] <= 1
    log = (home / "jobs" / str(child.job_id) / "train.log").read_text()
    assert f"{method.upper()} (" in log and "Traceback" not in log


def _start(name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable, "-m", "training.train", "--method", "dpo", "--parent", "med-zh",
            "--data", str(PAIRS_SAMPLE), "--name", name, *QUICK, *extra,
        ],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_cancelled_then_killed_preference_job_resumes_from_its_checkpoints_to_a_child(db, home, parent):
    process = _start("resumed", "--max-steps", "12", "--save-steps", "3", "--holdout", "0.25")
    job = wait_for_step(process, "resumed", 4)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143
    assert lifecycle.get(db, job.id).status == "cancelled"
    job_dir = home / "jobs" / str(job.id)
    saved = sorted(job_dir.glob("checkpoints/checkpoint-*"))
    assert saved and all((c / COMPLETE_MARKER).is_file() for c in saved)

    resumed = subprocess.Popen(
        [sys.executable, "-m", "training.train", "--name", "resumed", "--resume"],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_until(lambda: (jobs.get(db, job.id).step or 0) >= 8, what="step 8 after the resume", timeout=300)
    resumed.send_signal(signal.SIGKILL)
    resumed.wait()
    assert lifecycle.get(db, job.id).status == "interrupted"
    finished = run_module("training.train", "--name", "resumed", "--resume")
    assert finished.returncode == 0, finished.stderr[-3000:]
    child = adapters.get(db, "resumed")
    assert child.metrics["steps"] == 12 and child.parent_name == "med-zh" and child.method == "dpo"
    log = (job_dir / "train.log").read_text()
    assert log.count("resuming from") == 2
    assert [row.step for row in checkpoints.for_job(db, job.id)][-1] == 12


def test_two_processes_give_the_dpo_losses_and_weights_of_one(db, home, parent):
    common = ("--max-steps", "3", "--skip-evaluation", "--batch-size", "2")
    one = _preference_job("one", *common, "--grad-accum", "2")
    assert one.returncode == 0, one.stderr[-3000:]
    arguments = [
        "--method",
        "dpo",
        "--parent",
        "med-zh",
        "--data",
        str(PAIRS_SAMPLE),
        "--name",
        "two",
        "--lr",
        "1e-3",
        *common,
        "--grad-accum",
        "1",
    ]  # fmt: skip  2 processes x 2 = the same 4 pairs per step
    command = launchers.trainer_command(launchers.Launch(processes=2), arguments)
    two = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    rows = {name: adapters.get(db, name) for name in ("one", "two")}
    losses = {name: [m["loss"] for m in jobs.metrics_for(db, row.job_id)] for name, row in rows.items()}
    assert len(losses["one"]) == len(losses["two"]) == 3
    for single, parallel in zip(losses["one"], losses["two"], strict=True):
        assert abs(parallel - single) <= 1e-4 * abs(single), losses
    weights = {name: load_file(Path(row.path) / "adapter_model.safetensors") for name, row in rows.items()}
    for key, single in weights["one"].items():
        assert (weights["two"][key] - single).norm() / single.norm() <= 1e-4, key
    assert rows["two"].parent_name == "med-zh"
    assert "rank 1 of 2" in (Path(jobs.get(db, rows["two"].job_id).job_dir) / "rank1.log").read_text()


def test_mistakes_run_as_a_task_and_become_pairs_of_reference_over_output(db, home, parent):
    task = mistakes.launch(db, "med-zh", str(SAMPLE), limit=6)
    assert task.kind == "mistakes" and task.pid
    done = wait_until(
        lambda: (row := tasks.get(db, task.id)).status not in ("queued", "running") and row, what="the task"
    )
    assert done.status == "succeeded", done.error
    built = pairs.load(done.result["path"])
    assert built.source["kind"] == "mistakes" and built.source["adapter"] == "med-zh"
    assert done.result["pairs"] == len(built.records) and done.result["examples"] == 6
    references = {r["input"]: r["output"] for r in load_dataset(SAMPLE).records}
    for record in built.records:
        assert record["chosen"] == references[record["prompt"]] and record["rejected"] != record["chosen"]
    again = mistakes.launch(db, "med-zh", str(SAMPLE), limit=6)  # the same pairs: found, not made again
    wait_until(lambda: tasks.get(db, again.id).status == "succeeded", what="the second task")
    assert tasks.get(db, again.id).result["path"] == done.result["path"]


def test_a_stopped_mistakes_task_ends_cancelled_leaving_no_file(db, home, parent, tmp_path):
    rows = SAMPLE.read_text(encoding="utf-8") * 30  # long enough to stop in the middle
    data = tmp_path / "many.jsonl"
    data.write_text(rows, encoding="utf-8")
    task = mistakes.launch(db, "med-zh", str(data))
    wait_until(lambda: (tasks.get(db, task.id).stage or "").startswith("translating"), what="generation")
    assert supervisor.stop(db, task)
    ended = wait_until(lambda: (r := tasks.get(db, task.id)).status != "running" and r, what="the end")
    assert ended.status == "cancelled"
    out = Path(task.settings["out"])
    assert not out.exists() and not list(out.parent.glob(".tmp-*"))
