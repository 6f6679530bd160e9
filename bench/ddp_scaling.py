"""Data-parallel scaling: the same job on 1 and on N processes, the same examples per step.

    .venv/bin/python bench/ddp_scaling.py                        # built-in model, 2 CPU processes
    python bench/ddp_scaling.py --base hf:ORG/NAME --processes 2  # a GPU machine: goal >= 1.8x

Each run is the real trainer (`python -m training.train --processes N`, which launches torchrun
for N > 1) in a fresh TRANSLATOR_HOME; tokens/s is the trainer's own global figure, the median
over the logged steps after the first. On a 2-core CPU the ratio checks the plumbing, not speed:
two processes share the same two cores. Last line: the ratio.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARAMED_TRAIN = ROOT.parent / "shared" / "data" / "paramed" / "train.jsonl"
SAMPLE = ROOT / "data" / "translator_sample.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="builtin")
    parser.add_argument("--data", default=str(PARAMED_TRAIN if PARAMED_TRAIN.is_file() else SAMPLE))
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=2, help="examples per device per micro-batch")
    parser.add_argument("--grad-accum", type=int, default=2, help="at N processes (x N at one process)")
    args = parser.parse_args()
    results = {}
    for processes in (1, args.processes):
        accumulation = args.grad_accum * args.processes // processes
        results[processes] = run(args, processes, accumulation)
        rate, seconds = results[processes]
        print(
            f"{processes} process(es) x {args.batch_size} x {accumulation} accumulated: "
            f"{rate:.1f} tok/s (median of steps 2..{args.steps}), {seconds:.0f} s of training",
            flush=True,
        )
    ratio = results[args.processes][0] / results[1][0]
    print(f"{args.processes} processes run at {ratio:.2f}x the tokens/s of one")


def run(args, processes: int, accumulation: int) -> tuple[float, float]:
    from registry import adapters, connect, jobs

    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "TRANSLATOR_HOME": scratch, "TRANSFORMERS_VERBOSITY": "error"}
        command = [
            sys.executable, "-m", "training.train", "--base", args.base, "--data", args.data,
            "--name", f"scaling-{processes}", "--processes", str(processes), "--max-steps", str(args.steps),
            "--batch-size", str(args.batch_size), "--grad-accum", str(accumulation),
            "--skip-evaluation", "--holdout", "0", "--lora-dropout", "0",
        ]  # fmt: skip
        subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        os.environ["TRANSLATOR_HOME"] = scratch
        db = connect()
        (job,) = jobs.list_all(db)
        rates = [m["tokens_per_second"] for m in jobs.metrics_for(db, job.id)][1:]
        seconds = adapters.get(db, job.adapter_name).metrics["train_seconds"]
        return statistics.median(rates), seconds


if __name__ == "__main__":
    main()
