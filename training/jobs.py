"""Launch, watch and cancel trainer processes. A job outlives the page (and the server) that started it.

The trainer runs detached (`start_new_session=True`) with its output going straight to its log file:
never a pipe back to the UI, which would block the trainer once the pipe filled up.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from registry import home
from registry import jobs as job_rows
from registry.db import to_json

STALE_AFTER_SECONDS = 30.0


def launch(db, config: dict, **job_fields) -> dict:
    """Queue a job row, then start its trainer; the trainer claims the row with --job-id."""
    job = job_rows.create(db, adapter_name=config["name"], config=config, **job_fields)
    job_dir = home.jobs_dir() / str(job["id"])
    job_dir.mkdir(parents=True, exist_ok=True)
    log_path = job_dir / "train.log"
    (job_dir / "config.json").write_text(to_json(config), encoding="utf-8")
    process = spawn_trainer(["--job-id", str(job["id"])], log_path)
    job_rows.update(db, job["id"], pid=process.pid, log_path=str(log_path), job_dir=str(job_dir))
    return job_rows.get(db, job["id"])


def spawn_trainer(arguments: list[str], log_path: Path) -> subprocess.Popen:
    """`python -m training.train ARGS`, detached, appending its output to the job's log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "training.train", *arguments],
            cwd=home.PROJECT_ROOT,
            env={**os.environ, "TRANSLATOR_HOME": str(home.home()), "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def cancel(db, job_id: int) -> bool:
    """Ask the trainer to save a checkpoint and stop; it marks the job cancelled itself."""
    job = job_rows.get(db, job_id)
    if job is None or job["status"] not in job_rows.ACTIVE or not job["pid"]:
        return False
    if not is_trainer_alive(job["pid"]):
        refresh_liveness(db)
        return False
    os.kill(job["pid"], signal.SIGTERM)
    return True


def refresh_liveness(db, stale_after: float = STALE_AFTER_SECONDS) -> list[int]:
    """Mark queued/running jobs whose process is gone and whose heartbeat is stale as interrupted."""
    interrupted = []
    now = time.time()
    for job in db["jobs"].rows_where("status in (?, ?)", list(job_rows.ACTIVE)):
        last_sign = job["heartbeat_at"] or job["started_at"] or job["created_at"]
        if job["pid"] and is_trainer_alive(job["pid"]):
            continue
        if now - last_sign < stale_after:
            continue
        job_rows.finish(db, job["id"], "interrupted", error="The trainer process stopped without finishing.")
        interrupted.append(job["id"])
    return interrupted


def is_trainer_alive(pid: int) -> bool:
    """A live, non-zombie process that is one of our trainers (pids get reused)."""
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X") and b"training.train" in command
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return sys.platform != "linux"


def read_log_tail(job: dict, lines: int = 40) -> str:
    path = Path(job.get("log_path") or "")
    if not path.is_file():
        return ""
    with open(path, "rb") as log_file:
        log_file.seek(0, os.SEEK_END)
        log_file.seek(max(0, log_file.tell() - 64_000))
        text = log_file.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
