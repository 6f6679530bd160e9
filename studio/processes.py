"""Detached processes: started in a session of their own (they outlive the server and a closed tab),
their output appended to a log, never piped back; alive means the same pid with the same start
time (pids are reused). Trainers, exports and the API server all start and are watched here."""

import os
import subprocess
import sys
from pathlib import Path

from core import home, texts


def spawn_detached(
    module: str, arguments: list[str], log_path: Path, env: dict | None = None
) -> subprocess.Popen:
    """`python -m MODULE ARGS` in a session of its own (it outlives the server and a closed tab),
    its output appended to `log_path`, never piped back (a full pipe would block it); `env` adds
    what the process needs but no row may hold (a secret)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            cwd=home.PROJECT_ROOT,
            env={
                **os.environ,
                **(env or {}),
                "TRANSLATOR_HOME": str(home.home()),
                "PYTHONUNBUFFERED": "1",
                # messages stored in rows come in the language of whoever started the process
                "TRANSLATOR_LANG": texts.current(),
            },
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


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


def read_log_tail(job: dict, lines: int = 40, path: Path | None = None) -> str:
    path = Path(path or job.get("log_path") or "")
    if not path.is_file():
        return ""
    with open(path, "rb") as log_file:
        log_file.seek(0, os.SEEK_END)
        log_file.seek(max(0, log_file.tell() - 64_000))
        text = log_file.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
