"""Which learning rate suits each built-in model? Training loss and held-out BLEU / chrF per
checkpoint, for several learning rates, through the product's own trainer (its checkpoint scoring).

    .venv/bin/python bench/training_defaults.py                       # both built-in models, 3 rates
    .venv/bin/python bench/training_defaults.py --models builtin --lrs 1e-4,1e-3 --max-steps 10

The training page's defaults by model size (training/defaults.py) come from this run's figures:
see bench/README.md. Needs ../shared/data/paramed/train.jsonl; a scratch TRANSLATOR_HOME shares
the models cache.
"""

import argparse
import json
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from bench.scratch import scratch_home  # noqa: E402
from bench.translation_quality import PARAMED, run  # noqa: E402


def measure(model: str, lr: str, args) -> dict:
    from registry import adapters, connect, jobs
    from registry import checkpoints as checkpoint_rows

    name = f"lr-{model.replace(':', '-')}-{lr}"
    train = ["--base", model, "--data", PARAMED / "train.jsonl", "--role", "translator", "--name", name]
    train += ["--lr", lr, "--max-steps", args.max_steps, "--save-steps", args.save_steps]
    train += ["--limit", args.limit, "--holdout", args.holdout, "--seed", "42"]
    started = time.monotonic()
    run("training.train", *train)
    wall = time.monotonic() - started
    db = connect()
    adapter = adapters.require(db, name)
    losses = {m["step"]: m["loss"] for m in jobs.metrics_for(db, adapter.job_id) if m["loss"] is not None}
    curve = []
    for row in checkpoint_rows.for_job(db, adapter.job_id):
        window = [losses[s] for s in range(row.step - args.save_steps + 1, row.step + 1) if s in losses]
        curve.append(
            {
                "step": row.step,
                "train_loss": sum(window) / len(window) if window else None,
                **row.scores,
                "n": row.num_examples,
            }
        )
    return {"model": model, "lr": lr, "wall_s": wall, "curve": curve, "chosen": adapter.metrics}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="builtin:gemma3-270m,builtin")
    parser.add_argument("--lrs", default="1e-4,5e-4,1e-3")
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--save-steps", type=int, default=5)
    parser.add_argument("--limit", type=int, default=1632, help="training pairs read (held-out included)")
    parser.add_argument("--holdout", default="0.02", help="fraction held out and scored per checkpoint")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if not (PARAMED / "train.jsonl").is_file():
        raise SystemExit(f"needs {PARAMED}/train.jsonl (the shared ParaMed data)")
    results = []
    with scratch_home():
        for model in args.models.split(","):
            for lr in args.lrs.split(","):
                print(f"{model} lr {lr}: {args.max_steps} steps ...", flush=True)
                results.append(measure(model, lr, args))
                _print(results[-1])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    print("\n| model | lr | step | train loss | held-out BLEU | held-out chrF | wall |")
    print("|---|---|---|---|---|---|---|")
    for result in results:
        for point in result["curve"]:
            print(
                f"| {result['model']} | {result['lr']} | {point['step']} | {point['train_loss']:.3f} "
                f"| {point['bleu']:.1f} | {point['chrf']:.1f} | {result['wall_s']:.0f} s |"
            )
    return 0


def _print(result: dict) -> None:
    for point in result["curve"]:
        print(
            f"  step {point['step']}: train loss {point['train_loss']:.3f}, BLEU {point['bleu']:.1f}, "
            f"chrF {point['chrf']:.1f} (n={point['n']})",
            flush=True,
        )
    print(f"  published step {result['chosen'].get('checkpoint_step')}; {result['wall_s']:.0f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
