"""The one supervisor: every kind of run (training jobs, exports, API servers) is started, stopped and
reconciled by studio.supervisor over registry.runs, with one status vocabulary."""

import importlib.util
import os
import subprocess
import sys
import time

from core import texts
from registry import jobs, runs, tasks
from studio import supervisor


def test_one_status_vocabulary_with_a_label_for_every_status_on_every_screen():
    assert set(texts.STATUS) == set(runs.STATUSES) == set(texts.TASK_STATUS)
    assert set(runs.ACTIVE).isdisjoint(runs.ENDED) and set(runs.RESUMABLE) <= set(runs.ENDED)


def test_every_kind_names_a_worker_module_that_runs_as_a_script():
    for name, kind in supervisor.KINDS.items():
        spec = importlib.util.find_spec(kind.worker)
        assert spec is not None, name
        assert 'if __name__ == "__main__":' in open(spec.origin, encoding="utf-8").read(), kind.worker
    assert {kind.rows.table for kind in supervisor.KINDS.values()} == {t.table for t in supervisor.TABLES}


def test_an_ended_run_keeps_its_end(db):
    job = jobs.create(db, adapter_name="a", config={})
    assert jobs.finish(db, job.id, "cancelled")
    assert not jobs.finish(db, job.id, "succeeded")  # a late writer cannot overwrite the end
    assert jobs.get(db, job.id).status == "cancelled"
    task = tasks.create(db, kind="merge", adapter_name="a", settings={})
    assert task.status == "queued"
    assert tasks.finish(db, task.id, "succeeded", result={"path": "/x"})
    assert tasks.get(db, task.id).result == {"path": "/x"}


def test_one_reconcile_ends_every_kind_whose_process_is_gone_and_removes_its_staging(db, home, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = {"pid": os.getpid(), "pid_started": supervisor.process_start(os.getpid())}
    gone = {"pid": dead.pid, "pid_started": 1}
    job = jobs.create(db, adapter_name="half", config={}, status="running", **gone)
    staging = supervisor.job_staging_folder("half", job.id)
    staging.mkdir(parents=True)
    out = tmp_path / "merged"
    export = tasks.create(db, kind="merge", adapter_name="half", settings={"out": str(out)})
    tasks.update(db, export.id, status="running", **gone)
    (tmp_path / ".tmp-merged").mkdir()
    alive_job = jobs.create(db, adapter_name="alive", config={}, status="running", **me)
    # the same pid with another start time is another process (pids are reused)
    reused = tasks.create(db, kind="server", adapter_name="", settings={})
    tasks.update(db, reused.id, pid=os.getpid(), pid_started=(me["pid_started"] or 0) + 1)
    never_spawned = jobs.create(db, adapter_name="fresh", config={})

    found = supervisor.reconcile(db)

    assert sorted(found) == sorted(
        [("jobs", job.id), ("serving_tasks", export.id), ("serving_tasks", reused.id)]
    )
    assert jobs.get(db, job.id).error == texts.JOB_PROCESS_GONE
    assert tasks.get(db, export.id).error == texts.TASK_PROCESS_GONE
    assert not staging.exists() and not (tmp_path / ".tmp-merged").exists()
    assert jobs.get(db, alive_job.id).status == "running"
    assert jobs.get(db, never_spawned.id).status == "queued"  # inside its grace period
    assert not supervisor.stop(db, tasks.get(db, reused.id))  # ended: nothing is signalled


def test_stop_signals_a_live_run_and_launch_records_its_process(db, home):
    task = tasks.create(db, kind="server", adapter_name="", settings={})
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tasks.update(db, task.id, pid=sleeper.pid, pid_started=supervisor.process_start(sleeper.pid))
        assert supervisor.stop(db, tasks.get(db, task.id))
        assert sleeper.wait(timeout=10) == -15
    finally:
        sleeper.kill()
    launched = supervisor.launch(db, tasks.create(db, kind="merge", adapter_name="nothing", settings={}))
    assert launched.pid and launched.log_path.endswith(f"tasks/{launched.id}.log")
    deadline = time.monotonic() + 60
    while tasks.get(db, launched.id).status in runs.ACTIVE and time.monotonic() < deadline:
        time.sleep(0.2)
    assert tasks.get(db, launched.id).status == "failed"  # the worker wrote its own end


def test_reading_a_dead_run_shows_it_interrupted_and_writes_nothing(db, home):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job = jobs.create(db, adapter_name="half", config={}, status="running", pid=dead.pid, pid_started=1)
    export = tasks.create(db, kind="merge", adapter_name="half", settings={})
    tasks.update(db, export.id, status="running", pid=dead.pid, pid_started=1)
    staging = supervisor.job_staging_folder("half", job.id)
    staging.mkdir(parents=True)
    registry_before = (home / "registry.db").read_bytes()
    from serving import tasks as task_readers
    from training.jobs import lifecycle

    seen_job, seen_task = lifecycle.get(db, job.id), task_readers.get(db, export.id)
    assert (seen_job.status, seen_job.error) == ("interrupted", texts.JOB_PROCESS_GONE)
    assert (seen_task.status, seen_task.error) == ("interrupted", texts.TASK_PROCESS_GONE)
    assert [j.status for j in lifecycle.list_recent(db)] == ["interrupted"]
    assert [t.status for t in task_readers.list_recent(db)] == ["interrupted"]
    assert (home / "registry.db").read_bytes() == registry_before and staging.exists()
    assert jobs.get(db, job.id).status == tasks.get(db, export.id).status == "running"


def test_the_reconciler_ticks_at_its_start_and_then_every_period_repairing_rows(db, home):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = {"config": {}, "status": "running", "pid": dead.pid, "pid_started": 1}
    first = jobs.create(db, adapter_name="first", **gone)
    reconciler = supervisor.Reconciler(period=0.3).start()
    try:
        _wait(lambda: jobs.get(db, first.id).status == "interrupted", "the first tick")
        later = jobs.create(db, adapter_name="later", **gone)  # after the first tick
        ticks = reconciler.ticks
        _wait(lambda: jobs.get(db, later.id).status == "interrupted", "a later tick")
        assert reconciler.ticks > ticks
    finally:
        reconciler.stop()
    assert supervisor.Reconciler(period=0).start().ticks == 0  # 0: never, for a test that must see no write


def _wait(condition, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_the_reconciler_period_comes_from_the_setting_and_a_bad_setting_means_the_default(monkeypatch):
    monkeypatch.setenv("TRANSLATOR_RECONCILE_SECONDS", "2.5")
    assert supervisor.Reconciler().period == 2.5
    monkeypatch.setenv("TRANSLATOR_RECONCILE_SECONDS", "often")
    assert supervisor.Reconciler().period == supervisor.TICK_SECONDS
