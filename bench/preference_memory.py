"""What does a preference job's reference model cost in memory? Peak RSS of three training
processes on the same examples, same steps and lengths, one after another:

- SFT on the pairs' prompt → chosen (the supervised job the preference job is set against);
- DPO continuing that SFT adapter (the reference is a frozen copy of the parent's LoRA on the
  same base: the product's way);
- DPO from the base (the reference is the base itself, the LoRA switched off).

A second copy of the base would add its weights (printed beside) to the DPO peaks; what DPO adds
over SFT is the second answer's activations and the reference's forward passes.

    .venv/bin/python bench/preference_memory.py                      # Gemma-3-270m, 8 steps
    .venv/bin/python bench/preference_memory.py --base builtin --steps 4
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from bench.scratch import scratch_home  # noqa: E402

PAIRS = PROJECT_ROOT / "data" / "translator_pairs.jsonl"


def peak_of(*args) -> tuple[float, float]:
    """Run one training process; its own peak RSS (MiB, from wait4) and wall time."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "training.train", *map(str, args)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"training.train {' '.join(map(str, args))} failed:\n{output.decode()[-3000:]}")
    return usage.ru_maxrss / 1024, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="builtin:gemma3-270m")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    rows = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
    common = ["--max-steps", args.steps, "--batch-size", args.batch_size, "--grad-accum", 1]
    common += ["--holdout", 0, "--skip-evaluation", "--save-steps", args.steps, "--max-length", 256]
    with scratch_home(), tempfile.TemporaryDirectory() as scratch:
        from engine import catalogue, models
        from training.defaults import parameter_count

        sft_data = Path(scratch) / "chosen.jsonl"
        sft_rows = [{"input": r["prompt"], "output": r["chosen"]} for r in rows]
        sft_data.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in sft_rows), encoding="utf-8"
        )
        base = ["--base", args.base, "--role", "translator"]
        measured = {}
        print("SFT on prompt → chosen ...", flush=True)
        measured["SFT (prompt → chosen)"] = peak_of(*base, "--data", sft_data, "--name", "mem-sft", *common)
        print("DPO continuing it ...", flush=True)
        measured["DPO, continuing the SFT adapter"] = peak_of(
            "--method", "dpo", "--parent", "mem-sft", "--data", PAIRS, "--name", "mem-dpo-child", *common
        )
        print("DPO from the base ...", flush=True)
        measured["DPO, from the base"] = peak_of(
            *base, "--method", "dpo", "--data", PAIRS, "--name", "mem-dpo-base", *common
        )
        parameters = parameter_count(models.resolve_model_dir(catalogue.parse_model_id(args.base)))
    weights_mib = parameters * 4 / 2**20  # fp32 on the CPU
    sft_peak = measured["SFT (prompt → chosen)"][0]
    print(
        f"\n{args.base}: {parameters / 1e6:.0f}M parameters, fp32 weights {weights_mib:.0f} MiB; "
        f"{len(rows)} pairs, {args.steps} steps of {args.batch_size}, max_length 256, 2 cores"
    )
    print("| job | peak RSS | vs SFT | wall |")
    print("|---|---|---|---|")
    for name, (peak, wall) in measured.items():
        print(f"| {name} | {peak:.0f} MiB | {peak - sft_peak:+.0f} MiB | {wall:.0f} s |")
    print(f"| (a second copy of the base would add) | {weights_mib:.0f} MiB | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
