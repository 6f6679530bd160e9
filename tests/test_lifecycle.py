"""One job lifecycle (training.jobs.lifecycle): one check for page, CLI and resume; statuses that stay
true; cancels that are quick; and every way a stopped run can be finished."""

import fcntl
import json
import os
import re
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from core import texts
from core.errors import UserError
from core.home import PROJECT_ROOT
from registry import adapters, connect, jobs
from studio import supervisor
from tests.conftest import (
    TINY_TRAINING,
    call_main,
    handles_sigterm,
    run_module,
    start_trainer,
    wait_for_status,
    wait_for_step,
    wait_until,
    write_json,
)
from training import train
from training.config import TrainConfig, check_settings, parse_config
from training.jobs import lifecycle
from training.trainer.progress import COMPLETE_MARKER, newest_complete_checkpoint

SAMPLE = PROJECT_ROOT / "data" / "translator_sample.jsonl"
FAST = {"batch_size": 1, "grad_accum": 1, "lr": 1e-3}


def _config(tiny_model_dir, name="job-1", **settings) -> TrainConfig:
    given = {"base": str(tiny_model_dir), "data": str(SAMPLE), "name": name, **FAST, **settings}
    return replace(TrainConfig(), **given)


def _nothing_created(home, db):
    assert db["jobs"].count == 0 and db["adapters"].count == 0
    for folder in ("jobs", "adapters"):
        assert not [p for p in (home / folder).glob("*") if p.name != ".device.lock"], folder


BAD_SETTINGS = {
    "lr": (0.0, "--lr must be above 0 and at most 1 (or -1: by model size), not 0.0"),
    "epochs": (
        0.0,
        "--epochs must be above 0 and at most 1,000 (or -1: by model size), not 0.0. To train a fixed number",
    ),
    "max_steps": (-5, "--max-steps must be at least 1 and at most 10,000,000 (or -1), not -5"),
    "lora_r": (0, "--lora-r must be at least 1 and at most 1,024, not 0"),
    "batch_size": (0, "--batch-size must be at least 1"),
    "lora_dropout": (1.0, "--lora-dropout must be at least 0 and below 1"),
    "max_length": (7, "--max-length must be at least 8"),
    "holdout": (0.9, "--holdout must be at least 0 and at most 0.5"),
}


@pytest.mark.parametrize("setting", sorted(BAD_SETTINGS))
def test_every_setting_is_range_checked_before_anything_exists(home, db, tiny_model_dir, setting):
    value, message = BAD_SETTINGS[setting]
    with pytest.raises(UserError) as refused:
        lifecycle.submit(db, _config(tiny_model_dir, **{setting: value}))
    assert message in str(refused.value)
    _nothing_created(home, db)


def test_not_a_number_and_numbers_as_text_are_refused_naming_the_setting(home, db, tmp_path, capsys):
    for argv, message in (
        (["--lr", "nan"], "--lr must be above 0 and at most 1 (or -1: by model size), not nan"),
        (["--lr=-1e-4"], "--lr must be above 0"),
        (["--batch-size", "two"], "--batch-size must be a whole number, not 'two'"),
        (["--config", write_json(tmp_path / "c.json", {"lr": "1e-4"})], "c.json: --lr must be a number"),
        (["--config", write_json(tmp_path / "d.json", {"epochs": True})], "--epochs must be a number"),
    ):
        code = train.main(["--data", str(SAMPLE), "--name", "x", *map(str, argv)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: ") and message in err and "\n" not in err, err
    _nothing_created(home, db)
    assert check_settings({"batch_size": 4.0}).batch_size == 4  # a form's 4.0 is the whole number 4


def test_the_page_refuses_what_the_trainer_refuses_tokenisation_included(home, db, tiny_model_dir, tmp_path):
    long_prompts = write_json(tmp_path / "long.json", [{"input": "word " * 50, "output": "x"}])
    with pytest.raises(UserError, match="Every example of long.json is cut away at --max-length 8"):
        lifecycle.submit(db, _config(tiny_model_dir, data=str(long_prompts), max_length=8))
    with pytest.raises(UserError, match="Unknown role 'pirate'"):
        lifecycle.submit(db, _config(tiny_model_dir, role="pirate"))
    with pytest.raises(UserError, match="--prompt-format must be one of"):
        lifecycle.submit(db, _config(tiny_model_dir, prompt_format="alpaca"))
    with pytest.raises(UserError, match="does not exist"):
        lifecycle.submit(db, _config(tiny_model_dir, base=str(tmp_path / "no-model")))
    _nothing_created(home, db)


def test_a_relative_dataset_path_means_the_project_folder_for_the_page(home, db, tiny_model_dir, tmp_path):
    os.chdir(tmp_path)  # a server started elsewhere
    try:
        plan = lifecycle.check_request(
            db, _config(tiny_model_dir, data="data/translator_sample.jsonl"), base_dir=PROJECT_ROOT
        )
    finally:
        os.chdir(PROJECT_ROOT)
    assert plan.config.data == str(SAMPLE) and Path(plan.config.data).is_absolute()
    assert plan.config.base == f"local:{tiny_model_dir}" and plan.config.prompt_format == "chat_template"


def test_one_check_chain_serves_page_cli_and_resume():
    """The trainer, the page and resume call lifecycle.check_request; nothing else checks a request."""
    sources = {
        path.relative_to(PROJECT_ROOT).as_posix(): path.read_text(encoding="utf-8")
        for folder in ("training", "pages", "ui", "studio", "engine", "registry")
        for path in (PROJECT_ROOT / folder).rglob("*.py")
    }
    callers = sorted(path for path, text in sources.items() if "lifecycle.check_request(" in text)
    assert callers == ["training/trainer/job.py"]  # the trainer's job orchestration
    lifecycle_text = sources["training/jobs/lifecycle.py"]
    assert lifecycle_text.count("def check_request(") == 1
    assert len(re.findall(r"= check_request\(\s*db,", lifecycle_text)) == 2  # submit and resume
    for checker, owner in (
        ("load_dataset(", "training/jobs/plans.py"),
        ("tokenize_dataset(", "training/jobs/plans.py"),
        ("check_settings(", "training/jobs/lifecycle.py"),
    ):
        users = sorted(
            path for path, text in sources.items() if checker in text and "def " + checker not in text
        )
        assert owner in users, checker
        assert not {"training/train.py", "training/trainer/job.py", "training/trainer/fit.py"} & set(users), (
            checker
        )


def test_a_job_reads_its_dataset_once_records_where_and_which_and_resumes_only_on_the_same(
    home, db, tiny_model_dir, tmp_path, monkeypatch, capsys
):
    import hashlib

    from training.data import datasets

    copy = tmp_path / "pairs.jsonl"
    shutil.copy(SAMPLE, copy)
    reads = []
    real_parse = datasets.parse_dataset
    monkeypatch.setattr(
        datasets, "parse_dataset", lambda *a, **k: reads.append(k["name"]) or real_parse(*a, **k)
    )
    monkeypatch.chdir(tmp_path)  # the CLI takes a relative path from where it was run
    argv = ["--base", str(tiny_model_dir), "--data", "pairs.jsonl", "--name", "once", *TINY_TRAINING]
    assert train.main([*argv, "--max-steps", "2", "--holdout", "0.1"]) == 0
    assert reads == ["pairs.jsonl"]  # checks, training and the held-out evaluation: one read
    job = jobs.get(db, adapters.get(db, "once").job_id)
    assert job.dataset_path == str(copy) and job.config["data"] == str(copy)
    assert job.dataset_fingerprint == hashlib.sha256(copy.read_bytes()).hexdigest()[:16]

    _unpublish(db, home, "once")
    jobs.update(db, job.id, status="interrupted")  # as if killed: an ended run's end is not rewritten
    copy.write_text(copy.read_text(encoding="utf-8") + SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    capsys.readouterr()
    assert train.main(["--name", "once", "--resume"]) == 2
    assert f"pairs.jsonl changed since job {job.id} started" in capsys.readouterr().err
    assert jobs.get(db, job.id).status == "interrupted"  # still resumable once the file is back


@pytest.mark.slow
def test_a_dead_trainer_is_interrupted_whoever_asks_and_resume_from_the_cli_finishes_it(home, tiny_model_dir):
    process = start_trainer(tiny_model_dir, "killed", "--max-steps", "30", "--save-steps", "5")
    job = wait_for_step(process, "killed", 7)
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = run_module("training.train", "--name", "killed", "--resume")  # nothing else looked first
    assert result.returncode == 0, result.stderr[-3000:]
    db = connect()
    assert jobs.get(db, job.id).status == "succeeded"
    assert adapters.get(db, "killed").metrics["steps"] == 30


def test_a_checkpoint_cut_short_by_a_kill_is_never_resumed_from(home, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for step, complete in ((5, True), (10, True), (15, False)):
        folder = checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if complete:
            (folder / COMPLETE_MARKER).write_text("{}")
    assert newest_complete_checkpoint(checkpoints) == checkpoints / "checkpoint-10"
    assert not (checkpoints / "checkpoint-15").exists()


@pytest.mark.slow
def test_killed_while_saving_a_checkpoint_resume_uses_the_newest_complete_one(home, tiny_model_dir):
    process = start_trainer(tiny_model_dir, "saving", "--max-steps", "20", "--save-steps", "4")
    job = wait_for_step(process, "saving", 9)
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoints = home / "jobs" / str(job.id) / "checkpoints"
    complete = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    assert (complete / COMPLETE_MARKER).is_file()
    half_written = checkpoints / "checkpoint-12"  # as a kill in the middle of a save leaves it
    half_written.mkdir()
    (half_written / "adapter_model.safetensors").write_bytes(b"\0" * 100)
    result = run_module("training.train", "--name", "saving", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    log = (home / "jobs" / str(job.id) / "train.log").read_text()
    assert f"resuming from {complete}" in log and "removing checkpoint-12" in log
    assert jobs.get(connect(), job.id).status == "succeeded"


def test_resumed_from_its_final_checkpoint_a_job_publishes_without_training_further(home, db, tiny_model_dir):
    assert train.main(_argv(tiny_model_dir, "final", "--max-steps", "3", "--skip-evaluation")) == 0
    adapter = adapters.get(db, "final")
    job = jobs.get(db, adapter.job_id)
    metrics_before = len(jobs.metrics_for(db, job.id))
    _unpublish(db, home, "final")  # as if killed after the last checkpoint, before publishing
    jobs.update(db, job.id, status="interrupted")
    assert train.main(["--name", "final", "--resume"]) == 0
    republished = adapters.get(db, "final")
    assert republished.metrics["steps"] == 3 and len(jobs.metrics_for(db, job.id)) == metrics_before
    assert jobs.get(db, job.id).step == 3


def test_killed_between_the_folder_rename_and_the_row_the_job_registers_its_adapter(home, db, tiny_model_dir):
    assert train.main(_argv(tiny_model_dir, "renamed", "--max-steps", "2", "--skip-evaluation")) == 0
    adapter = adapters.get(db, "renamed")
    with db.conn:  # the row never got written; the folder was renamed into place
        db["adapters"].delete(adapter.id)
    jobs.update(db, adapter.job_id, status="interrupted")
    assert train.main(["--name", "renamed", "--resume"]) == 0
    again = adapters.get(db, "renamed")
    assert again.metrics["steps"] == 2 and again.job_id == adapter.job_id
    assert jobs.get(db, adapter.job_id).status == "succeeded"


def test_a_run_killed_while_publishing_reads_interrupted_at_once_and_the_tick_removes_its_staging(home, db):
    job = jobs.create(db, adapter_name="half", config={}, status="running", pid=None)
    jobs.update(db, job.id, created_at=time.time() - 60, heartbeat_at=time.time() - 60)
    staging = supervisor.job_staging_folder("half", job.id)
    staging.mkdir(parents=True)
    (staging / "adapter_model.safetensors").write_bytes(b"half")
    seen = lifecycle.list_recent(db)[0]
    assert seen.status == "interrupted" and seen.error == texts.JOB_PROCESS_GONE
    assert lifecycle.get(db, job.id) == seen
    assert jobs.get(db, job.id).status == "running" and staging.exists()  # reading wrote nothing
    reconciler = supervisor.Reconciler(period=0.2).start()
    try:
        wait_until(lambda: not staging.exists(), what="the tick", timeout=2)
    finally:
        reconciler.stop()
    assert jobs.get(db, job.id).status == "interrupted" and not list((home / "adapters").iterdir())


@pytest.mark.slow
def test_cancel_while_waiting_for_the_device_ends_cancelled_within_seconds(home, db, tiny_model_dir):
    (home / "jobs").mkdir(parents=True, exist_ok=True)
    lock = open(home / "jobs" / ".device.lock", "w")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)  # another job holds the device
    try:
        job = lifecycle.submit(db, _config(tiny_model_dir, name="waiting"))
        log = Path(job.log_path)
        wait_until(
            lambda: log.is_file() and "waiting for the running job" in log.read_text(), what="the queue"
        )
        started = time.monotonic()
        assert lifecycle.cancel(db, job.id)
        ended = wait_for_status(db, job.id, lambda j: j.status not in jobs.ACTIVE, what="the end", timeout=60)
        latency = time.monotonic() - started
    finally:
        lock.close()
    assert ended and jobs.get(db, job.id).status == "cancelled" and latency < 5, latency
    print(f"cancel while queued: {latency:.2f} s")


@pytest.mark.slow
def test_cancel_while_preparing_ends_cancelled_within_5_seconds(home, db, tiny_model_dir, tmp_path):
    """A dataset big enough that the trainer is still preparing (its tokens, then torch) when the
    cancel comes. 12,000 rows: the check tokenises them in about 5 s here (40,000 took 18 s)."""
    rows = [
        {"input": f"The patient number {i} has a fever and a cough.", "output": "患者发烧咳嗽。"}
        for i in range(12_000)
    ]
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    job = lifecycle.submit(db, _config(tiny_model_dir, name="preparing", data=str(big)))
    # the trainer handles SIGTERM from its first line (started warm or cold), and is then preparing
    wait_until(lambda: handles_sigterm(job.pid), what="the trainer's SIGTERM handler", every=0.005)
    assert jobs.get(db, job.id).num_examples and lifecycle.get(db, job.id).status == "queued"
    started = time.monotonic()
    assert lifecycle.cancel(db, job.id)
    wait_for_status(db, job.id, lambda j: j.status not in jobs.ACTIVE, what="the end", timeout=30)
    latency = time.monotonic() - started
    ended = jobs.get(db, job.id)
    log_tail = Path(ended.log_path).read_text(encoding="utf-8")[-3000:] if ended.log_path else ""
    assert ended.status == "cancelled" and latency < 5, (latency, ended.status, ended.error, log_tail)
    wait_until(lambda: not supervisor.process_alive(job.pid), what="the trainer's exit", timeout=10)
    log = Path(jobs.get(db, job.id).log_path).read_text(encoding="utf-8")
    assert "cancelled before training started" in log and "Traceback" not in log, log[-2000:]
    print(f"cancel while preparing: {latency:.2f} s")


@pytest.mark.slow
def test_cancel_during_training_stops_within_a_micro_batch_keeping_the_last_whole_step(
    home, tiny_model_dir, tmp_path
):
    """Optimizer steps of 300 micro-batches: a cancel must not wait for the end of one."""
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()] * 10
    data = write_json(tmp_path / "many.json", rows)
    process = start_trainer(
        tiny_model_dir,
        "accumulating",
        "--data",
        data,
        "--max-steps",
        "4",
        "--grad-accum",
        "300",
        "--holdout",
        "0",
    )
    wait_for_step(process, "accumulating", 2, timeout=600)
    db = connect()
    job_id = jobs.active_for_name(db, "accumulating").id
    step_time = _median_step_seconds(db, job_id)  # steps 1 to 2 (the epoch's last 100), loading excluded
    saved = home / "jobs" / str(job_id) / "checkpoints" / "checkpoint-2"
    wait_until(lambda: (saved / COMPLETE_MARKER).is_file(), what="checkpoint-2", timeout=30)
    written = {path.name: path.stat().st_mtime_ns for path in saved.iterdir()}
    time.sleep(step_time / 4)  # inside the third step's accumulation
    steps_done = jobs.get(db, job_id).step
    signalled = time.time()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == train.EXIT_CANCELLED
    job = jobs.latest_resumable(db, "accumulating")
    latency = job.finished_at - signalled  # until the job is ended; the interpreter's exit is not in it
    assert job.status == "cancelled" and steps_done == 2
    checkpoints = sorted((home / "jobs" / str(job.id) / "checkpoints").glob("checkpoint-*"))
    assert checkpoints[-1].name == "checkpoint-2"  # the state after the last whole step
    assert all((checkpoint / COMPLETE_MARKER).is_file() for checkpoint in checkpoints)
    # nothing was trained since checkpoint-2: it is not written again (a kill then could tear it)
    assert {path.name: path.stat().st_mtime_ns for path in saved.iterdir()} == written
    assert latency < step_time / 2, (latency, step_time)
    print(f"cancel during training: {latency:.2f} s; one optimizer step takes {step_time:.2f} s")


def test_held_out_evaluation_runs_inside_the_job_with_a_visible_state(home, db, tiny_model_dir, monkeypatch):
    from engine.generation import ChatEngine

    seen = []
    original = ChatEngine.after_training.__func__

    def spy(cls, peft_model, *args):
        seen.append(jobs.get(connect(), 1).status)
        return original(cls, peft_model, *args)

    monkeypatch.setattr(ChatEngine, "after_training", classmethod(spy))
    monkeypatch.setattr(ChatEngine, "__init__", lambda *a, **k: pytest.fail("a second model was loaded"))
    assert train.main(_argv(tiny_model_dir, "scored", "--max-steps", "2", "--holdout", "0.1")) == 0
    assert seen == ["evaluating"]
    adapter = adapters.get(db, "scored")
    assert jobs.get(db, adapter.job_id).status == "succeeded"
    stored = {row["adapter_id"]: row for row in db["evaluations"].rows}
    assert set(stored) == {adapter.id, None} and stored[adapter.id]["num_examples"] == 4


def test_base_predictions_of_different_bases_do_not_overwrite_each_other(home, db, tiny_model_dir, tmp_path):
    from training.evaluation.evaluate import evaluate

    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    data = write_json(tmp_path / "d.json", [{"input": "fever", "output": "发烧"}])
    paths = set()
    for base in (tiny_model_dir, other):
        row, _ = evaluate(db, data=str(data), base=str(base), role_name="translator")
        paths.add(row.predictions_path)
    assert len(paths) == 2 and all(Path(p).is_file() for p in paths)


def test_adapter_checks_run_before_the_base_model_loads(home, db, tiny_model_dir, tmp_path, monkeypatch):
    """With an empty models folder, loading the built-in model would convert it into that folder:
    it stays empty, so the refusal came first."""
    from tests.conftest import lora_folder, register_adapter

    empty_models = tmp_path / "models"
    monkeypatch.setenv("TRANSLATOR_MODELS_DIR", str(empty_models))
    register_adapter(db, "tiny-one", lora_folder(home / "adapters" / "tiny-one"), f"local:{tiny_model_dir}")
    chat = call_main("studio.chat", "--adapter", "tiny-one", "--base", "builtin", "hi")
    assert chat.returncode == 2 and f"was trained on local:{tiny_model_dir}" in chat.stderr
    register_adapter(db, "damaged", lora_folder(home / "adapters" / "damaged"), "builtin")
    weights = home / "adapters" / "damaged" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    evaluated = call_main(
        "training.evaluation.evaluate", "--adapter", "damaged", "--data", SAMPLE, "--limit", "1"
    )
    assert evaluated.returncode == 2 and "adapter_model.safetensors is damaged" in evaluated.stderr
    assert "Traceback" not in chat.stderr + evaluated.stderr
    assert not empty_models.exists() or not any(empty_models.iterdir())


def test_model_folders_that_cannot_load_get_a_clear_message(home, db, tiny_model_dir, tmp_path):
    only_config = tmp_path / "only-config"
    only_config.mkdir()
    shutil.copy(tiny_model_dir / "config.json", only_config)
    with pytest.raises(UserError, match="has no tokenizer"):
        lifecycle.check_request(db, _config(only_config))
    unknown = tmp_path / "unknown"
    shutil.copytree(tiny_model_dir, unknown)
    config = json.loads((unknown / "config.json").read_text())
    write_json(unknown / "config.json", {**config, "model_type": "wizard-lm-9000"})
    with pytest.raises(UserError, match="model type 'wizard-lm-9000' is unknown to transformers"):
        lifecycle.check_request(db, _config(unknown))
    _nothing_created(home, db)


def _argv(tiny_model_dir, name, *extra):
    return ["--base", str(tiny_model_dir), "--data", str(SAMPLE), "--name", name, *TINY_TRAINING, *extra]


def _unpublish(db, home, name):
    adapter = adapters.get(db, name)
    with db.conn:
        db["evaluations"].delete_where("adapter_id = ?", [adapter.id])
        db["adapters"].delete(adapter.id)
    shutil.rmtree(home / "adapters" / name)


def _median_step_seconds(db, job_id) -> float:
    stamps = [m["created_at"] for m in jobs.metrics_for(db, job_id)]
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:], strict=False))
    job = jobs.get(db, job_id)
    return gaps[len(gaps) // 2] if gaps else stamps[0] - job.started_at


def test_parse_config_rejects_unknown_settings_in_a_file(tmp_path):
    with pytest.raises(UserError, match="unknown settings colour"):
        parse_config(["--config", str(write_json(tmp_path / "c.json", {"lr": 1e-4, "colour": 2}))])


@pytest.mark.slow
def test_killed_after_registering_its_adapter_a_resumed_job_evaluates_and_succeeds(home, db, tiny_model_dir):
    """SIGKILL once the adapter row exists but before the job is marked succeeded (while it scores
    the held-out examples): the row is the job's own, so resuming finishes the job instead of
    answering that the name is taken."""
    trainer = start_trainer(tiny_model_dir, "registered", "--max-steps", "2", "--holdout", "0.2")
    try:
        adapter = wait_until(
            lambda: adapters.get(connect(), "registered"), what="the adapter row", every=0.02
        )
        os.kill(trainer.pid, signal.SIGKILL)
        trainer.wait(30)
    finally:
        trainer.kill()
    job = lifecycle.get(db, adapter.job_id)
    assert job.status == "interrupted", "killed before the job was marked succeeded"
    assert not db["evaluations"].count, "killed before the held-out scores were stored"
    lifecycle.check_request(
        db, lifecycle.stored_config(job, resume=True), job=job
    )  # the page's Resume refused it

    resumed = run_module("training.train", "--name", "registered", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert lifecycle.get(db, job.id).status == "succeeded"
    again = adapters.get(db, "registered")
    assert again.id == adapter.id and again.metrics["steps"] == 2, "not trained or published again"
    evaluated = {row["adapter_id"] for row in db["evaluations"].rows}
    assert evaluated == {adapter.id, None}, "the held-out examples scored for the adapter and its base"
    log = Path(job.log_path).read_text()
    assert "registered by this job before it was stopped: publishing is done" in log


def _started_together(commands: list[list[str]]) -> list:
    """Processes started at the same moment (each with the test's TRANSLATOR_HOME), then their ends."""
    import subprocess
    import sys

    processes = [
        subprocess.Popen(
            [sys.executable, *command],
            cwd=PROJECT_ROOT,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    outputs = [process.communicate(timeout=300) for process in processes]  # reads, so no pipe fills
    return [(process.returncode, *output) for process, output in zip(processes, outputs, strict=True)]


@pytest.mark.slow
@pytest.mark.parametrize("path", ["command line", "page"])
def test_two_jobs_for_one_name_started_together_the_second_is_refused_at_claim_time(
    home, db, tiny_model_dir, path
):
    """One active job per adapter name is a rule of the registry: whichever path starts the second,
    it is refused when it claims the name (exit 2, no second row), never after training."""
    if path == "command line":
        command = [
            "-m", "training.train", "--base", str(tiny_model_dir), "--data", str(SAMPLE), "--name", "twin",
            *TINY_TRAINING, "--max-steps", "3",
        ]  # fmt: skip
    else:  # what the page's Start runs in the server process
        submit = (
            "import sys; from registry import connect; from core.errors import UserError; "
            "from training.jobs import lifecycle; from training.config import check_settings\n"
            f"try: lifecycle.submit_form(connect(), {{'base': {str(tiny_model_dir)!r}, "
            f"'data': {str(SAMPLE)!r}, 'name': 'twin', 'max_steps': 3, 'batch_size': 1}})\n"
            "except UserError as error: print(error, file=sys.stderr); sys.exit(2)"
        )
        command = ["-c", submit]
    ends = _started_together([command, command])
    codes = sorted(code for code, _, _ in ends)
    assert codes == [0, 2], ends
    refused = next(err for code, _, err in ends if code == 2)
    assert "is already training 'twin'" in refused, refused
    rows = list(db["jobs"].rows_where("adapter_name = 'twin'"))
    assert len(rows) == 1, rows
    wait_for_status(db, rows[0]["id"], lambda job: job.status == "succeeded", what="the first job")


def test_a_resume_while_another_job_of_its_name_is_active_is_refused_by_the_registry(home, db):
    stopped = jobs.create(db, adapter_name="twin", config={})
    jobs.finish(db, stopped.id, "interrupted")
    active = jobs.create(db, adapter_name="twin", config={}, status="running")
    with pytest.raises(UserError, match=f"Job {active.id} is already training 'twin'"):
        jobs.update(db, stopped.id, status="queued")
    assert jobs.get(db, stopped.id).status == "interrupted"
    with pytest.raises(UserError, match="is already training"):
        jobs.create(db, adapter_name="twin", config={})
    assert db["jobs"].count == 2


def test_a_second_demo_click_while_the_first_is_queued_takes_the_next_name(
    home, db, tiny_model_dir, monkeypatch
):
    monkeypatch.setattr(lifecycle, "DEMO", replace(lifecycle.DEMO, base=str(tiny_model_dir)))
    monkeypatch.setattr(supervisor, "launch", lambda db, row, **kw: row)
    first = lifecycle.start_demo(db)
    second = lifecycle.start_demo(db)
    assert (first.adapter_name, second.adapter_name) == ("demo-translator-1", "demo-translator-2")
