"""How long the training page's Start takes, and what each later process pays for the plan.

    .venv/bin/python bench/plan_start.py                    # the bundled sample and 50,000 rows
    .venv/bin/python bench/plan_start.py --rows 5000 --base builtin:smollm2

Start is what the page runs when the button is pressed (`lifecycle.check_request` + `create_job`: every
check, the tokenising, the stored plan), without launching the trainer. It is timed with no cached
tokens (a new dataset) and again with them (a resume, or a second job on the same data); then
`plans.load`, what the trainer, the launcher and each other rank do instead. The large file is made
by repeating the bundled sample's pairs with a row number, so no two rows are alike.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from bench.scratch import scratch_home  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="builtin", help="base model (default: the Chinese built-in)")
    parser.add_argument("--rows", type=int, default=50_000, help="rows of the large dataset")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each step (median)")
    args = parser.parse_args()
    with scratch_home(), tempfile.TemporaryDirectory() as folder:
        from training.jobs.lifecycle import SAMPLES

        sample = SAMPLES["translator"]
        large = make_large(sample, Path(folder) / f"large-{args.rows}.jsonl", args.rows)
        from training.jobs import lifecycle

        warm_up(args.base, sample)  # converts the built-in once; not part of any figure
        print(f"base {args.base}; median of {args.repeats} runs; seconds")
        print(f"{'dataset':<28}{'rows':>8}{'Start, new data':>17}{'Start, cached':>15}{'plans.load':>12}")
        for path in (sample, large):
            rows = sum(1 for _ in path.open(encoding="utf-8"))
            cold, warm, load = measure(lifecycle, args.base, path, args.repeats)
            print(f"{path.name:<28}{rows:>8}{cold:>17.2f}{warm:>15.2f}{load:>12.2f}")


def make_large(sample: Path, path: Path, rows: int) -> Path:
    pairs = [json.loads(line) for line in sample.open(encoding="utf-8") if line.strip()]
    with path.open("w", encoding="utf-8") as file:
        for number in range(rows):
            pair = pairs[number % len(pairs)]
            row = {"input": f"{pair['input']} ({number})", "output": f"{pair['output']}（{number}）"}
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def warm_up(base: str, sample: Path) -> None:
    from engine import catalogue, models

    models.resolve_model_dir(catalogue.parse_model_id(base))


def measure(lifecycle, base: str, path: Path, repeats: int) -> tuple[float, float, float]:
    import shutil

    from core import home
    from registry import connect
    from training.jobs import plans

    db = connect()
    cold, warm, load = [], [], []
    for attempt in range(repeats):
        settings = {
            "base": base,
            "data": str(path),
            "role": "translator",
            "name": f"start-{path.stem}-{attempt}",
        }
        shutil.rmtree(home.tokenized_cache_dir(), ignore_errors=True)
        cold.append(_timed(lambda s=settings: lifecycle.create_job(db, lifecycle.check_request(db, s))))
        settings = {**settings, "name": f"{settings['name']}-again"}
        started = time.perf_counter()
        job = lifecycle.create_job(db, lifecycle.check_request(db, settings))
        warm.append(time.perf_counter() - started)
        load.append(_timed(lambda job=job: plans.load(Path(job.job_dir), job.id)))
    return statistics.median(cold), statistics.median(warm), statistics.median(load)


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
