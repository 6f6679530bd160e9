"""The one supervisor of detached processes: training jobs, exports and API servers are kinds of run.

A run's row exists first (registry.runs); `launch` starts its worker, `python -m MODULE ARGS`, in a
session of its own (it outlives the server and a closed tab), its output appended to the run's log,
never piped back; alive means the same pid with the same start time (pids are reused). `stop` sends
SIGTERM: the worker ends the run itself (a checkpoint saved, a half-written export removed, open
responses finished). `reconcile` marks every active run whose process is gone interrupted and
removes what it was writing; it runs in one place while the studio runs, the Reconciler's tick (and
in the actions that must see the truth before they act: stop, resume, delete). Readers never write:
`as_seen` shows a dead run as interrupted until the tick has written it down. A new kind of run is
one entry in KINDS plus its worker module.
"""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core import errors, home, texts
from core.errors import UserError
from core.texts import Message
from registry import connect
from registry import jobs as job_rows
from registry import tasks as task_rows
from registry.jobs import Job
from registry.runs import ACTIVE, RunTable
from registry.tasks import Task
from studio import slurm
from studio import warm as warm_start

# A run whose process was never recorded (the app died between the row and the spawn) is given
# this long before it counts as interrupted.
UNSPAWNED_GRACE_SECONDS = 30.0
TICK_SECONDS = 5.0  # how often the Reconciler of a server process looks for dead runs

Run = Job | Task  # every run has id, kind, status, pid, pid_started, log_path, created_at


@dataclass(frozen=True)
class Kind:
    """What the supervisor knows of one kind of run."""

    rows: RunTable
    worker: str  # the module run as `python -m WORKER`
    arguments: Callable[[Run, bool], list[str]]  # the run and whether it resumes
    log_path: Callable[[Run], Path]
    staging: Callable[[Run], list[Path]]  # what a run of this kind writes before renaming it into place
    gone: str  # the error of a run whose process vanished (a code of core.texts)
    serves: bool = False  # runs until asked to stop (an API server): that end is "stopped", not a cancel
    # whether its worker may fork from the resident (studio.warm), which has no bitsandbytes
    warm: Callable[[Run], bool] = lambda row: True


def job_staging_folder(name: str, job_id: int) -> Path:
    """Where a training job writes its adapter before renaming it into place."""
    return home.adapters_dir() / f".tmp-{name}-job{job_id}"


def tasks_dir() -> Path:
    return home.home() / "tasks"


def _export_staging(task: Task) -> list[Path]:
    out = task.settings.get("out")
    if not out:
        return []
    out = Path(out)
    return [out.with_name(f".tmp-{out.name}"), out.with_name(f".tmp-merged-{out.name}")]


TRAINING = Kind(
    rows=job_rows.ROWS,
    worker="training.train",
    arguments=lambda job, resume: ["--job-id", str(job.id)] + (["--resume"] if resume else []),
    log_path=lambda job: Path(job.log_path or home.jobs_dir() / str(job.id) / "train.log"),
    staging=lambda job: [job_staging_folder(job.adapter_name, job.id)],
    gone="JOB_PROCESS_GONE",
    warm=lambda job: (job.config or {}).get("quantize", "none") == "none",
)
_TASK = dict(
    rows=task_rows.ROWS,
    worker="exporters.worker",
    arguments=lambda task, resume: [str(task.id)],
    log_path=lambda task: tasks_dir() / f"{task.id}.log",
    gone="TASK_PROCESS_GONE",
)
# exporters.worker.EXPORTS does what each export kind names; a test holds the two together.
EXPORT_KINDS = ("merge", "gguf", "gguf-lora", "push")
KINDS = {
    "train": TRAINING,
    **{kind: Kind(**_TASK, staging=_export_staging) for kind in EXPORT_KINDS},
    "server": Kind(**_TASK, staging=lambda task: [], serves=True),
    # a translator's own mistakes as preference pairs (training/evaluation/mistakes.py), written
    # whole at the end
    "mistakes": Kind(
        **{**_TASK, "worker": "training.evaluation.mistakes"},
        staging=lambda task: [staging_file(Path(task.settings["out"]), task.pid)] if task.pid else [],
    ),
    # the adapter card's Evaluate (training/evaluation/evaluate.py): rows are written whole, one per pass
    "evaluate": Kind(**{**_TASK, "worker": "training.evaluation.evaluate"}, staging=lambda task: []),
}
TABLES = (job_rows.ROWS, task_rows.ROWS)


def kind_of(row: Run) -> Kind:
    return KINDS[row.kind]


def staging_file(final: Path, pid: int) -> Path:
    """Where process `pid` writes a file before renaming it to `final`."""
    return final.with_name(f".tmp-{pid}-{final.name}")


class Stopped(BaseException):
    """SIGTERM in a task's process: unwinds through every cleanup, as KeyboardInterrupt would."""


def run_task(task_id: int, work: Callable) -> int:
    """The body of a task's process (an export, a server, a pair builder): `work(db, task, stage)`
    does what the row says and returns its result; this writes how it ended: succeeded with the
    result, failed with the message, cancelled (SIGTERM), or stopped (a server asked to stop)."""
    db = connect()
    task = task_rows.get(db, task_id)
    if task is None:
        print(f"no task {task_id}", file=sys.stderr)
        return 2

    def stopped(signum, frame):
        raise Stopped

    signal.signal(signal.SIGTERM, stopped)
    serves = kind_of(task).serves

    def stage(step: str) -> None:
        task_rows.update(db, task.id, stage=step)

    try:
        if not serves:
            task_rows.update(db, task.id, status="running")
        result = work(db, task, stage)
    except Stopped:
        task_rows.finish(db, task_id, "stopped" if serves else "cancelled")
        return 1
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        task_rows.finish(db, task_id, "failed", error=error.message or str(error))
        return 2
    except Exception as error:  # the whole traceback goes to the task's log; the card gets one line
        task_rows.finish(db, task_id, "failed", error=f"{type(error).__name__}: {errors.first_line(error)}")
        raise
    task_rows.finish(db, task_id, "stopped" if serves else "succeeded", result=None if serves else result)
    return 0


def on_cluster(row: Run | None) -> bool:
    """A training job handed to Slurm: its state is Slurm's, its process may be on another machine."""
    return isinstance(row, Job) and (row.config or {}).get("cluster") == "slurm"


def launch(db, row: Run, *, resume: bool = False, env: dict | None = None) -> Run:
    """Start the worker of a run whose row exists; `env` adds secrets the row must not hold. A
    cluster job is submitted to Slurm instead, as the batch script its plan wrote."""
    kind = kind_of(row)
    if on_cluster(row):
        job_dir = Path(row.job_dir or home.jobs_dir() / str(row.id))
        slurm_id = slurm.submit(
            str(job_dir / "slurm.sh"), str(home.PROJECT_ROOT), ["--resume"] if resume else []
        )
        kind.rows.update(db, row.id, slurm_job_id=slurm_id, log_path=str(kind.log_path(row)))
        return kind.rows.get(db, row.id)
    log_path = kind.log_path(row)
    pid = spawn_detached(kind.worker, kind.arguments(row, resume), log_path, env=env, warm=kind.warm(row))
    kind.rows.update(db, row.id, pid=pid, pid_started=process_start(pid), log_path=str(log_path))
    return kind.rows.get(db, row.id)


def stop(db, row: Run | None) -> bool:
    """Ask an active run's worker to stop (SIGTERM); it writes its own end."""
    row = row and kind_of(row).rows.get(db, row.id)
    if on_cluster(row) and row.status in ACTIVE and row.slurm_job_id:
        # the trainer reads this on the signal: a cancel, not a time limit or a preemption
        kind_of(row).rows.update(db, row.id, stop_requested_at=time.time())
        slurm.cancel(row.slurm_job_id)
        return True
    if row is None or row.status not in ACTIVE or not row.pid:
        return False
    if not process_alive(row.pid, row.pid_started):
        reconcile(db)
        return False
    try:
        os.kill(row.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def gone(row: Run) -> bool:
    """An active run whose process is gone, or that no process took within the grace period; a
    cluster job whose Slurm job ended (or vanished) without the trainer writing its end."""
    if row.status not in ACTIVE:
        return False
    if on_cluster(row) and row.slurm_job_id:
        return slurm_end(row) is not None
    if row.pid:
        return not process_alive(row.pid, row.pid_started)
    last_sign = max(getattr(row, "heartbeat_at", None) or 0, row.created_at or 0)  # tasks have none
    return time.time() - last_sign >= UNSPAWNED_GRACE_SECONDS


def as_seen(row: Run | None) -> Run | None:
    """The run as it stands, read without writing: one whose process is gone reads as interrupted
    with its kind's reason, whoever asks, before the reconciler has written it down."""
    if row is None or not gone(row):
        return row
    return dataclasses.replace(row, status="interrupted", error=str(why_gone(row)))


def why_gone(row: Run) -> Message:
    return (on_cluster(row) and row.slurm_job_id and slurm_end(row)) or Message(kind_of(row).gone)


def slurm_end(row: Job) -> Message | None:
    """Why a cluster job's Slurm job no longer runs it (None while it is pending or running): it
    ended in some state without the trainer writing the end, or Slurm has forgotten it."""
    found = slurm.state(row.slurm_job_id)
    if found is None:
        return Message("SLURM_VANISHED", {"id": row.slurm_job_id})
    if found.ended:
        return Message("SLURM_ENDED", {"id": row.slurm_job_id, "state": found.state, "reason": found.reason})
    return None


def reconcile(db) -> list[tuple[str, int]]:
    """Mark every active run whose process is gone interrupted and remove what it was writing
    (an adapter or an export exists complete or not at all); returns (table, id) of each. Run by
    the Reconciler's tick and by the actions that need the truth first (stop, resume, delete);
    readers use `as_seen` and never write."""
    interrupted = []
    for table in TABLES:
        for row in table.active(db):
            if not gone(row):
                continue
            if table.mark_interrupted(db, row.id, row.pid, why_gone(row)):
                remove_staging(row)
                interrupted.append((table.table, row.id))
    return interrupted


class Reconciler:
    """The one place that repairs rows while the studio runs: a thread of the server process that
    reconciles at its start and then every `period` seconds (TRANSLATOR_RECONCILE_SECONDS; 0: never,
    for a test that must see nothing written)."""

    def __init__(self, period: float | None = None):
        if period is None:
            try:
                period = float(os.environ.get("TRANSLATOR_RECONCILE_SECONDS") or TICK_SECONDS)
            except ValueError:  # a setting that is not a number: the product's default
                period = TICK_SECONDS
        self.period = period
        self.ticks = 0
        self._stop = threading.Event()

    def start(self) -> "Reconciler":
        if self.period > 0:
            threading.Thread(target=self._run, name="reconciler", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        db = None
        while True:
            try:
                db = db or connect()
                reconcile(db)
            except Exception as error:  # a locked or missing registry now is not the end of the thread
                print(f"reconciler: {type(error).__name__}: {errors.first_line(error)}", file=sys.stderr)
                db = None
            self.ticks += 1
            if self._stop.wait(self.period):
                return


def remove_staging(row: Run) -> None:
    for staging in kind_of(row).staging(row):
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)


def spawn_detached(
    module: str, arguments: list[str], log_path: Path, env: dict | None = None, warm: bool = True
) -> int:
    """The pid of `python -m MODULE ARGS` in a session of its own (it outlives the server and a
    closed tab), its output appended to `log_path`, never piped back (a full pipe would block it);
    `env` adds what the process needs but no row may hold (a secret). Forked from the resident
    process that has the libraries imported (studio.warm) when one answers and `warm` allows it,
    else started cold."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **(env or {}),
        "TRANSLATOR_HOME": str(home.home()),
        "PYTHONUNBUFFERED": "1",
        # messages stored in rows come in the language of whoever started the process
        "TRANSLATOR_LANG": texts.current(),
    }
    if warm:
        try:
            pid = warm_start.start(module, arguments, log_path, env, home.PROJECT_ROOT)
        except OSError:  # no private folder for the socket: start cold
            pid = None
        if pid is not None:
            return pid
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            cwd=home.PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ).pid


def process_start(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (Linux); None where unknown."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_alive(pid: int, started: int | None = None) -> bool:
    """A live, non-zombie process, and the same one that was recorded (pids are reused)."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.joinpath("self").exists():  # Linux: /proc tells state and start time
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return False
        return fields[0] not in ("Z", "X") and (started is None or int(fields[19]) == started)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def log_tail(row: Run, lines: int = 40, path: Path | None = None) -> str:
    """The last lines of a run's log (or of `path`, another log of the run: a rank's)."""
    path = Path(path or row.log_path or "")
    if not path.is_file():
        return ""
    with open(path, "rb") as log_file:
        log_file.seek(0, os.SEEK_END)
        log_file.seek(max(0, log_file.tell() - 64_000))
        text = log_file.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
