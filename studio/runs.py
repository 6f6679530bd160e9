"""What the studio runs and how each run ended, from a shell, in the reader's language.

    python -m studio.runs                 # the newest training jobs, exports, servers and tasks
    python -m studio.runs --active        # only what is queued or running now
    python -m studio.runs --json          # the same rows for a script

It only reads: a run whose process is gone shows as interrupted (studio.supervisor.as_seen); the
studio's reconciler writes that down. Errors are stored as message codes, so they read in the
language of TRANSLATOR_LANG here, whatever language the person who started the run used.
"""

import argparse
import json
import sys
from dataclasses import dataclass

from core import texts
from core.errors import UserError
from registry import connect
from registry import jobs as job_rows
from registry import tasks as task_rows
from studio import accounts, supervisor
from studio.accounts import LOCAL, Asker


@dataclass(frozen=True)
class RunLine:
    """One run as the listing shows it, every field already in the reader's language."""

    run: str  # "job 12" or "task 5": the two tables number their runs apart
    kind: str
    name: str
    status: str
    progress: str
    error: str
    created_at: float


def kind_label(kind: str) -> str:
    """A kind of run as people call it: training, merged export, API server, evaluation..."""
    return {**texts.EXPORT_KINDS, **texts.RUN_KINDS}.get(kind, kind)


def run_lines(db, *, limit: int = 20, active_only: bool = False, asker: Asker = LOCAL) -> list[RunLine]:
    """The newest runs of every kind that `asker` may see, newest first, as the reader would see them now."""
    jobs = map(supervisor.as_seen, job_rows.ROWS.list_recent(db, limit=limit))
    tasks = map(supervisor.as_seen, task_rows.list_recent(db, limit=limit))
    jobs = [job for job in jobs if asker.owns(job.owner_id)]
    tasks = [task for task in tasks if asker.owns(task.owner_id)]
    lines = []
    for job in jobs:
        if not active_only or job.status in job_rows.ACTIVE:
            progress = f"{job.step or 0}/{job.total_steps}" if job.total_steps else ""
            lines.append(_line(f"job {job.id}", job, progress))
    for task in tasks:
        if not active_only or task.status in task_rows.ACTIVE:
            stage = (
                texts.TASK_STAGES.get(task.stage, task.stage or "") if task.status in task_rows.ACTIVE else ""
            )
            lines.append(_line(f"task {task.id}", task, stage))
    return sorted(lines, key=lambda line: line.created_at, reverse=True)[:limit]


def _line(run: str, row, progress: str) -> RunLine:
    waiting = getattr(row, "waiting_for", None) if row.status == "queued" else None
    reason = row.error or waiting or ""
    return RunLine(
        run=run,
        kind=kind_label(row.kind),
        name=row.adapter_name or "",
        status=texts.STATUS[row.status],
        progress=progress,
        error=reason.splitlines()[0] if reason else "",
        created_at=row.created_at,
    )


def table(lines: list[RunLine]) -> str:
    columns = list(texts.RUNS_COLUMNS)
    rows = [[texts.RUNS_COLUMNS[column] for column in columns]]
    rows += [[getattr(line, column) for column in columns] for line in lines]
    widths = [max(_width(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join(
        "  ".join(_pad(cell, width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _pad(cell: str, width: int) -> str:
    return cell + " " * (width - _width(cell))


def _width(text: str) -> int:
    """Columns a terminal gives the text: CJK characters take two."""
    return sum(2 if "\u2e80" <= char <= "\uffef" else 1 for char in text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--active", action="store_true", help="only runs that are queued or running")
    parser.add_argument("--limit", type=int, default=20, help="how many runs at most (default 20)")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    args = parser.parse_args(argv)
    try:
        db = connect()
        lines = run_lines(db, limit=max(args.limit, 1), active_only=args.active, asker=accounts.cli_asker(db))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        for line in lines:
            print(json.dumps(line.__dict__, ensure_ascii=False))
    elif lines:
        print(table(lines))
    else:
        print(texts.RUNS_NONE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
