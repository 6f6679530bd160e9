"""How good a translator does each built-in model become, through the product's own trainer and
evaluator? Base and adapter BLEU / chrF (sacrebleu, zh) on ParaMed dev, with paired-bootstrap 95%
intervals, the p-value of the gain, and the training wall time.

    .venv/bin/python bench/translation_quality.py --quick      # ~5 min on 2 cores: a sanity figure
    .venv/bin/python bench/translation_quality.py              # the goal run: the product's defaults
    .venv/bin/python bench/translation_quality.py --models builtin:gemma3-270m --max-steps 40 --lr 5e-4

Every setting not given here is the trainer's own default (the product's defaults). Needs
../shared/data/paramed/; runs in a scratch TRANSLATOR_HOME sharing the models cache.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from bench.scratch import scratch_home  # noqa: E402

PARAMED = PROJECT_ROOT.parent / "shared" / "data" / "paramed"


def run(module: str, *args) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{module} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done


def measure(model: str, args) -> dict:
    from registry import adapters, connect
    from registry import evaluations as evaluation_rows
    from training.evaluation.evaluate import untranslated_terms
    from training.evaluation.significance import compare_prediction_files

    name = "quality-" + model.replace(":", "-")
    train = ["--base", model, "--data", PARAMED / "train.jsonl", "--role", "translator", "--name", name]
    train += ["--holdout", "0", "--skip-evaluation", "--max-steps", args.max_steps, "--limit", args.limit]
    train += ["--lr", args.lr] if args.lr else []
    train += ["--grad-accum", args.grad_accum] if args.grad_accum else []
    train += ["--epochs", args.epochs] if args.epochs else []
    train += ["--lora-r", args.lora_r] if args.lora_r else []
    train += ["--gradient-checkpointing", args.gradient_checkpointing]
    started = time.monotonic()
    run("training.train", *train)
    wall = time.monotonic() - started
    dev = ["--data", PARAMED / "dev.jsonl", "--limit", args.dev_limit, "--batch-size", args.batch_size]
    if not args.against:
        run("training.evaluation.evaluate", "--base-only", "--base", model, *dev)
    run("training.evaluation.evaluate", "--adapter", name, *dev)
    db = connect()
    adapter = adapters.require(db, name)
    mine = evaluation_rows.for_adapter(db, adapter.id)[0]
    if args.keep:
        kept_file = Path(args.keep) / f"{name}.jsonl"
        kept_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mine.predictions_path, kept_file)
        print(f"{model}: predictions kept in {kept_file}", flush=True)
    baseline_file = args.against or evaluation_rows.base_counterpart(db, mine).predictions_path
    tested, _ = compare_prediction_files(Path(mine.predictions_path), Path(baseline_file))
    lines = Path(mine.predictions_path).read_text(encoding="utf-8").splitlines()
    examples = lines[:3]
    rows = [json.loads(line) for line in lines]
    kept = untranslated_terms([r["output"] for r in rows], [r["reference"] for r in rows])
    return {
        "untranslated": kept,
        "decoding": mine.decoding or "greedy",
        "model": model,
        "train_s": wall,
        "tested": tested,
        "examples": examples,
        "n": mine.num_examples,
        "steps": adapter.metrics.get("steps"),
        "lr": adapter.hyperparameters.get("lr"),
        "epochs": adapter.hyperparameters.get("epochs"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="10 steps of 4 pairs (no accumulation), 20 dev sentences"
    )
    parser.add_argument("--models", default="builtin:gemma3-270m,builtin")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="training pairs used (0: all)")
    parser.add_argument("--dev-limit", type=int, default=None)
    parser.add_argument("--lr", default="", help="learning rate (default: the trainer's)")
    parser.add_argument("--grad-accum", default="", help="gradient accumulation (default: the trainer's)")
    parser.add_argument("--batch-size", type=int, default=20, help="evaluation batch size")
    parser.add_argument("--epochs", default="", help="epochs (default: the trainer's, by model size)")
    parser.add_argument("--lora-r", default="", help="LoRA rank (default: the trainer's)")
    parser.add_argument("--keep", default="", help="copy the adapter's dev predictions into this folder")
    parser.add_argument(
        "--against",
        default="",
        help="a kept predictions file (same dev sentences) to compare with, instead of the base model: "
        "the ablation of one change, by the paired bootstrap",
    )
    parser.add_argument(
        "--gradient-checkpointing", default="auto", help="auto (the memory estimate decides), on or off"
    )
    args = parser.parse_args()
    quick = {"max_steps": 10, "limit": 200, "dev_limit": 20, "grad_accum": "1"}
    full = {"max_steps": -1, "limit": 0, "dev_limit": 200}  # -1: the product's epochs for the model size
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) in (None, ""):
            setattr(args, key, value)
    models = args.models.split(",")[:1] if args.quick else args.models.split(",")
    if not (PARAMED / "train.jsonl").is_file():
        raise SystemExit(f"needs {PARAMED}/train.jsonl and dev.jsonl (the shared ParaMed data)")
    rows = []
    with scratch_home():
        for model in models:
            steps = "the product's epochs" if args.max_steps == -1 else f"{args.max_steps} steps"
            print(f"{model}: training ({steps}) ...", flush=True)
            rows.append(measure(model, args))
    pairs = args.limit or "all"
    print(f"\nParaMed dev, {rows[0]['n']} sentences; trained on {pairs} training pairs")
    columns = "model,lr,epochs,steps,train wall,base BLEU,adapter BLEU,p,base chrF,adapter chrF,p"
    if args.against:
        columns = columns.replace("base", "against")
    print("| " + " | ".join(columns.split(",")) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        bleu, chrf = row["tested"]["bleu"], row["tested"]["chrf"]
        print(
            f"| {row['model']} | {row['lr']:g} | {row['epochs']:g} | {row['steps']} | {row['train_s']:.0f} s "
            f"| {bleu.baseline:.1f} ± {bleu.baseline_ci:.1f} | {bleu.system:.1f} ± {bleu.system_ci:.1f} "
            f"| {bleu.p_value:.4f} | {chrf.baseline:.1f} ± {chrf.baseline_ci:.1f} "
            f"| {chrf.system:.1f} ± {chrf.system_ci:.1f} | {chrf.p_value:.4f} |"
        )
    for row in rows:
        if args.against:
            for tested in row["tested"].values():
                print(
                    f"{row['model']}: {tested.metric} {tested.difference:+.2f} against {args.against} "
                    f"[{tested.difference_low:+.2f}, {tested.difference_high:+.2f}], p = {tested.p_value:.3f}"
                )
    for row in rows:
        kept = row["untranslated"]
        print(
            f"{row['model']}: decoding {row['decoding']}; {kept['sentences']} of {row['n']} outputs "
            f"({kept['share']:.0%}) keep English words their reference translated; most kept: "
            + ", ".join(f"{word} ({count})" for word, count in kept["most_common"])
        )
    for row in rows:
        print(f"\n{row['model']}: first dev sentences (input, reference, adapter output)")
        for line in row["examples"]:
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
