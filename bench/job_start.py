"""From Start to the first training step, and to an API server that answers: a worker forked from
the warm-start resident (studio/warm.py) against one started cold (`python -m`).

    .venv/bin/python bench/job_start.py                     # SmolLM2 (builtin), 3 rounds
    .venv/bin/python bench/job_start.py --rounds 5 --base builtin:gemma3-270m

Each round submits one job cold and one warm (alternating which goes first), each a single step on
the bundled sample, and times `lifecycle.submit` returning → the trainer's first recorded step, and
→ the job's end. The resident is started and ready before the first warm job (its own start is a
cold start's imports, paid once per idle period). Medians; the last line is the ratio of the first
steps' medians.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from bench.scratch import scratch_home  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="builtin")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with scratch_home():
        from registry import connect
        from studio import warm
        from training.jobs.lifecycle import SAMPLES

        db = connect()
        ready_resident(warm)
        times = {"cold": [], "warm": []}
        for round_number in range(args.rounds):
            order = ("cold", "warm") if round_number % 2 == 0 else ("warm", "cold")
            for way in order:
                times[way].append(one_job(db, args.base, SAMPLES["translator"], way, round_number))
        print(f"base {args.base}; {args.rounds} jobs each; median seconds")
        print(f"{'start':<8}{'to first step':>15}{'to the end':>13}")
        for way in ("cold", "warm"):
            first = statistics.median(t[0] for t in times[way])
            end = statistics.median(t[1] for t in times[way])
            print(f"{way:<8}{first:>15.2f}{end:>13.2f}")
        cold = statistics.median(t[0] for t in times["cold"])
        warm_first = statistics.median(t[0] for t in times["warm"])
        print(f"first step, warm / cold: {warm_first / cold:.2f}")


def ready_resident(warm) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    socket_path = warm.resident_socket(env, PROJECT_ROOT)
    if warm.start("training.train", ["--help"], Path(os.devnull), env, PROJECT_ROOT) is None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and (connection := warm._connect(socket_path)) is None:
            time.sleep(0.2)
        connection.close()


def one_job(db, base: str, sample: Path, way: str, round_number: int) -> tuple[float, float]:
    from registry import jobs
    from training.jobs import lifecycle

    os.environ["TRANSLATOR_WARM_START"] = "1" if way == "warm" else "0"
    settings = {
        "base": base,
        "data": str(sample),
        "name": f"start-{way}-{round_number}",
        "max_steps": 1,
        "batch_size": 1,
        "grad_accum": 1,
        "skip_evaluation": True,
    }
    job = lifecycle.submit(db, settings)
    started = time.monotonic()
    first_step = None
    while True:
        row = jobs.get(db, job.id)
        if first_step is None and (row.step or 0) >= 1:
            first_step = time.monotonic() - started
        if row.status not in jobs.ACTIVE:
            if row.status != "succeeded":
                raise SystemExit(f"job {job.id} ({way}) ended {row.status}: {row.error}")
            return first_step or time.monotonic() - started, time.monotonic() - started
        time.sleep(0.02)


if __name__ == "__main__":
    main()
