"""Running out of memory while training ends the job as failed with the setting to change named,
and resuming with that setting continues from the last checkpoint with the same examples per step."""

import textwrap
from pathlib import Path

import pytest
import torch

from registry import adapters, connect, jobs
from tests.conftest import start_trainer, wait_for_status
from tests.test_pages import _app, app_env  # noqa: F401
from training.config import TrainConfig
from training.jobs import lifecycle
from training.parallel import memory
from training.trainer.job import EXIT_FAILED

# Replaces Trainer.training_step in the trainer subprocess (PYTHONPATH): from step OOM_FROM_STEP on,
# a forward pass wider than OOM_ABOVE examples raises what CUDA raises when memory runs out.
INJECTED_OUT_OF_MEMORY = """
import os

import torch
from transformers import Trainer

_training_step = Trainer.training_step


def training_step(self, *args, **kwargs):
    if (
        self.state.global_step >= int(os.environ["OOM_FROM_STEP"])
        and self.args.per_device_train_batch_size > int(os.environ["OOM_ABOVE"])
    ):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
    return _training_step(self, *args, **kwargs)


Trainer.training_step = training_step
"""


def _config(**settings) -> TrainConfig:
    return TrainConfig(name="med", batch_size=4, grad_accum=2, **settings)


def test_the_remedy_halves_the_micro_batch_keeping_the_examples_per_step():
    error = memory.out_of_memory(_config(), micro_batch=8, checkpointing=False, device="cuda:0")
    assert error.changes == {"micro_batch": 4}
    assert "python -m training.train --name med --resume --micro-batch 4" in str(error)
    odd = TrainConfig(name="med", batch_size=3, grad_accum=2)  # 6 per step: 6 -> 3, not 2
    assert memory.out_of_memory(odd, micro_batch=6, checkpointing=True, device="cpu").changes == {
        "micro_batch": 3
    }


def test_at_one_example_the_remedy_is_checkpointing_and_after_that_there_is_none():
    error = memory.out_of_memory(_config(), micro_batch=1, checkpointing=False, device="cpu")
    assert error.changes == {"gradient_checkpointing": "on"}
    assert "--gradient-checkpointing on" in str(error)
    last = memory.out_of_memory(_config(max_length=512), micro_batch=1, checkpointing=True, device="cpu")
    assert last.changes == {} and "512" in str(last) and "--resume" not in str(last)


def test_out_of_memory_is_recognised_on_cuda_and_on_the_cpu_and_nothing_else_is():
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    for error in (torch.OutOfMemoryError("CUDA out of memory"), MemoryError(), cpu):
        assert memory.is_out_of_memory(error)
    for error in (RuntimeError("shape mismatch"), ValueError("out of memory")):
        assert not memory.is_out_of_memory(error)


@pytest.mark.slow
def test_out_of_memory_fails_the_job_naming_the_micro_batch_and_resuming_with_it_continues(
    home, tiny_model_dir, tmp_path, monkeypatch
):
    (tmp_path / "inject" / "sitecustomize.py").parent.mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(textwrap.dedent(INJECTED_OUT_OF_MEMORY))
    # dropout off: a micro-batch of 2 then computes exactly what one of 4 did, step for step
    same = ("--max-steps", "6", "--batch-size", "4", "--lora-dropout", "0", "--holdout", "0")
    reference = start_trainer(tiny_model_dir, "reference", *same, "--micro-batch", "4")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-3000:]

    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "inject"))
    monkeypatch.setenv("OOM_FROM_STEP", "3")
    monkeypatch.setenv("OOM_ABOVE", "2")
    process = start_trainer(tiny_model_dir, "med", *same, "--micro-batch", "4", "--save-steps", "2")
    assert process.wait(timeout=300) == EXIT_FAILED
    db = connect()
    failed = jobs.get(db, jobs.latest_resumable(db, "med").id)
    assert failed.status == "failed" and adapters.get(db, "med") is None
    assert failed.remedy == {"micro_batch": 2}
    assert "--resume --micro-batch 2" in failed.error and "4" in failed.error
    checkpoints = sorted(
        p.name for p in (home / "jobs" / str(failed.id) / "checkpoints").glob("checkpoint-*")
    )
    assert checkpoints == ["checkpoint-2"]

    lifecycle.resume(db, failed.id, changes=failed.remedy)  # the page's "Resume with micro-batch 2"
    ended = wait_for_status(db, failed.id, lambda j: j.status not in jobs.ACTIVE, what="the end", timeout=300)
    assert ended.status == "succeeded", ended.error
    assert ended.remedy == {} and ended.config["micro_batch"] == 2
    log = (home / "jobs" / str(failed.id) / "train.log").read_text()
    assert "checkpoint-2" in log.split("resuming from")[-1].splitlines()[0]
    assert "2 examples x 2 accumulated = 4 examples per step" in log
    assert adapters.get(db, "med").metrics["steps"] == 6

    def losses(job_id):
        return {row["step"]: row["loss"] for row in jobs.metrics_for(db, job_id)}  # the last of each step

    resumed, uninterrupted = losses(failed.id), losses(adapters.get(db, "reference").job_id)
    assert set(resumed) == set(uninterrupted) == set(range(1, 7))
    for step in range(3, 7):  # trained after the resume, 2 examples at a time
        assert resumed[step] == pytest.approx(uninterrupted[step], rel=1e-4), step


def test_the_job_panel_offers_the_resume_the_failure_named(
    app_env,  # noqa: F811
    home,
    tiny_model_dir,
    monkeypatch,
):
    from core import texts
    from core.home import PROJECT_ROOT
    from studio import supervisor
    from training.jobs import plans

    settings = {"base": str(tiny_model_dir), "data": str(PROJECT_ROOT / "data" / "translator_sample.jsonl")}
    plan = lifecycle.check_request(
        app_env, {**settings, "name": "med", "role": "translator", "micro_batch": 4}
    )
    job = lifecycle.create_job(app_env, plan)
    error = memory.out_of_memory(plan.config, micro_batch=4, checkpointing=False, device="cuda:0")
    jobs.finish(app_env, job.id, "failed", error=str(error), remedy=error.changes)
    launched = []
    monkeypatch.setattr(supervisor, "launch", lambda db, job, resume: launched.append(job.id) or job)

    app = _app("pages/train.py", job=str(job.id))
    assert str(error) in [e.value for e in app.error]
    assert app.button(key=f"resume-remedy-{job.id}").label == texts.RESUME_WITH.format(
        changes="micro-batch 2"
    )
    app.button(key=f"resume-remedy-{job.id}").click().run()
    assert not app.exception and launched == [job.id]
    resumed = jobs.get(app_env, job.id)
    assert resumed.status == "queued" and resumed.remedy == {} and resumed.error is None
    assert plans.load(Path(resumed.job_dir), job.id, resume=True).config.micro_batch == 2
