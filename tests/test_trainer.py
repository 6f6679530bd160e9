"""The trainer as users run it: a real subprocess reporting through a real SQLite registry."""

import json
import signal
from pathlib import Path

import pytest

from core.home import PROJECT_ROOT
from registry import adapters, connect, jobs
from studio.supervisor import process_alive, reconcile
from tests.conftest import (
    call_main,
    make_adapter,
    register_adapter,
    run_module,
    start_trainer,
    wait_for_status,
    wait_for_step,
    wait_until,
    write_json,
)
from training import train
from training.evaluation.scores import score_table
from training.jobs import lifecycle

SAMPLE = PROJECT_ROOT / "data" / "translator_sample.jsonl"


def _nothing_created(home, db):
    assert db["jobs"].count == 0 and db["adapters"].count == 0
    assert not any((home / "jobs").glob("*")) if (home / "jobs").exists() else True
    assert not any((home / "adapters").glob("*")) if (home / "adapters").exists() else True


def _bad_inputs(tmp_path, tiny):
    long_prompts = write_json(tmp_path / "long.json", [{"input": "word " * 50, "output": "x"}])
    return {
        "missing file": (["--data", tmp_path / "nope.jsonl"], "Dataset file not found"),
        "not UTF-8": (
            ["--data", _write(tmp_path / "l1.jsonl", '{"input": "é", "output": "x"}'.encode("latin-1"))],
            "is not UTF-8",
        ),
        "unparsable": (["--data", _write(tmp_path / "b.json", b"[{")], "is not valid JSON"),
        "missing fields": (
            ["--data", write_json(tmp_path / "f.json", [{"q": "a", "a": "b"}])],
            "lacks the fields",
        ),
        "empty": (["--data", write_json(tmp_path / "e.json", [])], "holds no examples"),
        "all truncated": (
            ["--data", long_prompts, "--max-length", "10"],
            "Every example of long.json is cut away",
        ),
        "unsafe name": (["--data", SAMPLE, "--name", "../evil"], "name '../evil' is not allowed"),
        "unknown role": (["--data", SAMPLE, "--role", "pirate"], "Unknown role 'pirate'"),
        "unknown base": (["--data", SAMPLE, "--base", "./no/such/model"], "does not exist"),
        "bad config": (
            ["--data", SAMPLE, "--config", write_json(tmp_path / "c.json", {"lr": 1, "colour": 2})],
            "unknown settings colour",
        ),
    }


def _write(path, content: bytes):
    path.write_bytes(content)
    return path


def test_every_bad_input_gives_one_line_exit_2_and_creates_nothing(
    home, db, tmp_path, tiny_model_dir, capsys
):
    for case, (args, message) in _bad_inputs(tmp_path, tiny_model_dir).items():
        argv = ["--base", str(tiny_model_dir), "--name", "ok-name", *map(str, args)]
        code = train.main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2, case
        assert err.startswith("error: ") and "\n" not in err and message in err, (case, err)
        _nothing_created(home, db)


def test_a_taken_name_is_refused_before_anything_is_created(home, db, tiny_model_dir, capsys):
    folder = make_adapter(tiny_model_dir, home / "adapters" / "taken", seed=0)
    register_adapter(db, "taken", folder, f"local:{tiny_model_dir}")
    code = train.main(["--base", str(tiny_model_dir), "--data", str(SAMPLE), "--name", "taken"])
    assert code == 2 and "An adapter named 'taken' already exists" in capsys.readouterr().err
    assert db["jobs"].count == 0
    (home / "adapters" / "orphan").mkdir()
    code = train.main(["--base", str(tiny_model_dir), "--data", str(SAMPLE), "--name", "orphan"])
    assert code == 2 and "exists but is not registered" in capsys.readouterr().err


def test_bad_input_from_a_real_process_is_one_line(home, tmp_path):
    result = run_module("training.train", "--data", tmp_path / "missing.jsonl", "--name", "x")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith(
        "error: Dataset file not found"
    )


@pytest.mark.slow
def test_training_publishes_a_ready_adapter_that_changes_the_model(trained_job, tiny_model_dir, monkeypatch):
    trained_job.at_home(monkeypatch)
    home = trained_job.home
    db = connect()
    adapter = adapters.get(db, "tiny-t")
    folder = home / "adapters" / "tiny-t"
    assert adapters.folder_is_present(adapter) and adapter.path == str(folder)
    assert (folder / "adapter_model.safetensors").is_file() and not list(folder.glob("*.bin"))
    assert (
        json.loads((folder / "translator_adapter.json").read_text())["base_model"]
        == f"local:{tiny_model_dir}"
    )
    assert not list((home / "adapters").glob(".tmp-*"))
    assert adapter.role == "translator" and adapter.hyperparameters["lora_r"] == 8
    assert adapter.metrics["steps"] == 6 and adapter.metrics["final_loss"] > 0
    job = jobs.get(db, adapter.job_id)
    assert job.status == "succeeded" and job.step == 6 and job.total_steps == 6
    assert [m["step"] for m in jobs.metrics_for(db, job.id)] == [1, 2, 3, 4, 5, 6]
    assert "published adapter 'tiny-t'" in (home / "jobs" / str(job.id) / "train.log").read_text()

    import torch

    from engine.generation import ChatEngine
    from engine.roles import TRANSLATOR

    engine = ChatEngine(str(tiny_model_dir), device="cpu")
    ids = engine.prompt_ids(TRANSLATOR, "The patient has a fever.", adapter=adapter)
    assert not torch.allclose(engine.next_token_logits(ids, adapter), engine.next_token_logits(ids)), (
        "a trained adapter must not be a no-op"
    )


@pytest.mark.slow
def test_a_killed_trainer_is_reported_interrupted_and_resume_finishes_it(home, tiny_model_dir):
    process = start_trainer(tiny_model_dir, "killed", "--max-steps", "40", "--save-steps", "10")
    job = wait_for_step(process, "killed", 14)
    process.send_signal(signal.SIGKILL)
    process.wait()
    db = connect()
    assert not process_alive(job.pid, job.pid_started)
    assert reconcile(db) == [("jobs", job.id)]  # at once: a dead pid is a dead job
    assert jobs.get(db, job.id).status == "interrupted"
    assert adapters.get(db, "killed") is None and not (home / "adapters" / "killed").exists()
    checkpoints = sorted((home / "jobs" / str(job.id) / "checkpoints").glob("checkpoint-*"))
    assert checkpoints, "a checkpoint should have been saved every 10 steps"
    saved_step = max(int(path.name.split("-")[1]) for path in checkpoints)

    result = run_module("training.train", "--name", "killed", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert jobs.get(db, job.id).status == "succeeded"
    assert adapters.folder_is_present(adapters.get(db, "killed"))
    log = (home / "jobs" / str(job.id) / "train.log").read_text()
    assert f"resuming from {checkpoints[-1].parent}/checkpoint-{saved_step}" in log
    resumed_steps = [m["step"] for m in jobs.metrics_for(db, job.id)]
    assert resumed_steps[-1] == 40 and resumed_steps.count(saved_step + 1) == 2  # logged, killed, redone


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_marks_cancelled_and_resume_continues(home, tiny_model_dir):
    process = start_trainer(tiny_model_dir, "stopped", "--max-steps", "40")
    job = wait_for_step(process, "stopped", 3)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == train.EXIT_CANCELLED
    db = connect()
    stopped = jobs.get(db, job.id)
    assert stopped.status == "cancelled" and adapters.get(db, "stopped") is None
    saved = sorted((home / "jobs" / str(job.id) / "checkpoints").glob("checkpoint-*"))
    assert saved, "SIGTERM must save a checkpoint"
    lifecycle.resume(db, job.id)  # as the training page's Resume button does
    ended = wait_for_status(db, job.id, lambda j: j.status not in jobs.ACTIVE, what="the end")
    assert ended.status == "succeeded", jobs.get(db, job.id)
    assert adapters.get(db, "stopped").metrics["steps"] == 40
    assert "resuming from" in (home / "jobs" / str(job.id) / "train.log").read_text()


@pytest.mark.slow
def test_a_second_job_waits_queued_until_the_first_is_done(home, tiny_model_dir):
    first = start_trainer(tiny_model_dir, "first", "--max-steps", "200")
    wait_for_step(first, "first", 1)
    second = start_trainer(tiny_model_dir, "second", "--max-steps", "2")
    db = connect()
    waiting = _active_job(db, "second", lambda job: job.pid == second.pid and job.log_path)
    log = Path(waiting.log_path)
    _active_job(db, "second", lambda job: log.is_file() and "waiting for the running job" in log.read_text())
    assert jobs.get(db, waiting.id).status == "queued" and first.poll() is None
    assert first.wait(timeout=180) == 0 and second.wait(timeout=120) == 0
    first_job, second_job = (adapters.get(db, name).job_id for name in ("first", "second"))
    assert jobs.get(db, second_job).started_at >= jobs.get(db, first_job).finished_at


def _active_job(db, name, condition):
    def found():
        job = jobs.active_for_name(db, name)
        return job if job and condition(job) else None

    return wait_until(found, what=f"an active job {name} that matches", timeout=60, every=0.1)


def test_a_queued_job_that_fails_its_checks_is_marked_failed_with_the_reason(home, db, tmp_path, capsys):
    job = jobs.create(
        db, adapter_name="queued-bad", config={"name": "queued-bad", "data": str(tmp_path / "x.json")}
    )
    assert train.main(["--job-id", str(job.id)]) == 2
    failed = jobs.get(db, job.id)
    assert failed.status == "failed" and "Dataset file not found" in failed.error
    assert "Dataset file not found" in capsys.readouterr().err


def test_resume_without_a_resumable_job_is_refused(home, capsys):
    assert train.main(["--name", "never-ran", "--resume"]) == 2
    assert "Nothing to resume for 'never-ran'" in capsys.readouterr().err


@pytest.mark.slow
def test_acceptance_builtin_model_on_paramed_trains_and_chats(home, paramed_train):
    result = run_module(
        "training.train",
        "--base",
        "builtin",
        "--data",
        paramed_train,
        "--role",
        "translator",
        "--name",
        "t1",
        "--max-steps",
        "3",
        "--limit",
        "16",
        "--batch-size",
        "1",
        "--grad-accum",
        "1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    adapter = adapters.get(connect(), "t1")
    assert adapters.folder_is_present(adapter) and adapter.base_model == "builtin"
    assert (home / "adapters" / "t1" / "adapter_model.safetensors").is_file()
    chat = call_main(
        "studio.chat",
        "--adapter",
        "t1",
        "--role",
        "translator",
        "--max-new-tokens",
        "16",
        "the patient has a fever.",
    )
    assert chat.returncode == 0, chat.stderr[-3000:]
    assert chat.stdout.strip()

    dev = paramed_train.with_name("dev.jsonl")
    for who in (["--base-only", "--base", "builtin"], ["--adapter", "t1"]):
        # 3 sentences: each costs about 7 s a model at two beams, and more add nothing checked here
        scored = call_main(
            "training.evaluation.evaluate", *who, "--data", dev, "--limit", "3", "--batch-size", "3"
        )
        assert scored.returncode == 0, scored.stderr[-3000:]
        assert "BLEU = " in scored.stdout and "tok:zh" in scored.stdout and "chrF = " in scored.stdout
        print(scored.stdout)
    line = score_table(connect(), adapter)[0]
    assert line["n"] == 3 and "gain bleu" in line and "gain chrf" in line
