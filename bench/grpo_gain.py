"""Does GRPO with the chrF reward make a translator better, and does MBR decoding beat 2 beams? The
product's own commands, end to end, with every choice made on one half of the dev file and
confirmed on the other:

1. an SFT translator trained with the product's defaults on the ParaMed training pairs (the parent;
   reused when --home already has it);
2. a GRPO child of it on the same training pairs (`--method grpo --parent ...`, rewards chrF and the
   English-terms penalty), for --grpo-steps steps (the time budget, printed);
3. dev translations through the product's evaluator: the parent with greedy, 2 beams (the
   translator's preset today) and MBR (--mbr candidates), the child with greedy and 2 beams;
4. on each half of the dev file (the first half chooses, the second confirms: a preset picked as the
   best of several on the same sentences it is reported on can be noise), the paired bootstrap
   (sacrebleu, 1,000 resamples): ΔBLEU, ΔchrF, 95% intervals, p, and English terms kept.

    .venv/bin/python bench/grpo_gain.py --home /work/bench_home            # keeps and reuses the parent
    .venv/bin/python bench/grpo_gain.py --grpo-steps 2 --dev-limit 8 --parent-steps 2   # a smoke run

Needs ../shared/data/paramed/. A step's time and peak RSS of the GRPO job are printed beside the
SFT parent's (same data, same model).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from bench.preference_gain import home_for, run  # noqa: E402

PARAMED = PROJECT_ROOT.parent / "shared" / "data" / "paramed"
PARENT, CHILD = "paramed-sft", "paramed-grpo"


def predictions(name: str, decoding: str, dev: list) -> tuple[list[dict], float]:
    """The adapter's dev translations with `decoding` (the evaluator's file), and the seconds it took."""
    from registry import adapters, connect
    from registry import evaluations as evaluation_rows

    started = time.monotonic()
    run("training.evaluation.evaluate", "--adapter", name, *dev, "--decoding", decoding)
    seconds = time.monotonic() - started
    adapter = adapters.require(connect(), name)
    rows = [row for row in evaluation_rows.for_adapter(connect(), adapter.id) if row.predictions_path]
    wanted = {"greedy": "greedy", "beams=2": "beams=2,length_penalty=1"}.get(decoding)
    row = next(r for r in rows if (r.decoding == wanted if wanted else r.decoding.startswith("mbr=")))
    lines = Path(row.predictions_path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()], seconds


def compare(system: list[dict], baseline: list[dict], half: slice) -> dict:
    from training.evaluation.evaluate import untranslated_terms
    from training.evaluation.significance import paired_bootstrap

    mine, theirs = system[half], baseline[half]
    references = [row["reference"] for row in mine]
    tested, _ = paired_bootstrap(references, [r["output"] for r in mine], [r["output"] for r in theirs])
    kept = [
        untranslated_terms([r["output"] for r in rows], references)["sentences"] for rows in (mine, theirs)
    ]
    return {**tested, "kept": kept, "n": len(mine)}


def step_figures(adapter) -> str:
    metrics = adapter.metrics
    per_step = (
        metrics.get("train_seconds") / max(metrics.get("steps") or 1, 1)
        if metrics.get("train_seconds")
        else None
    )
    shown = f"{per_step:.1f} s/step" if per_step else "? s/step"
    return f"{shown}, peak RSS {metrics.get('peak_rss_mb', 0):,.0f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="builtin:gemma3-270m")
    parser.add_argument("--home", default="", help="a TRANSLATOR_HOME to keep (and reuse its parent)")
    parser.add_argument("--parent-steps", type=int, default=0, help="the parent's steps (0: the defaults)")
    parser.add_argument("--grpo-steps", type=int, default=16, help="the GRPO child's steps (its time budget)")
    parser.add_argument("--grpo", default="", help="more GRPO flags, e.g. '--kl 0.1 --generations 8'")
    parser.add_argument("--mbr", default="mbr=4,0.7,0.95", help="the MBR decoding compared with 2 beams")
    parser.add_argument("--dev-limit", type=int, default=0, help="dev sentences scored (0: all)")
    parser.add_argument(
        "--mbr-sentences",
        type=int,
        default=0,
        help="MBR decodes only this many: half from each half (0: all)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="generation batch size")
    args = parser.parse_args()
    if not (PARAMED / "train.jsonl").is_file():
        raise SystemExit(f"needs {PARAMED}/train.jsonl and dev.jsonl (the shared ParaMed data)")
    dev = ["--data", PARAMED / "dev.jsonl", "--batch-size", args.batch_size]
    dev += ["--limit", args.dev_limit] if args.dev_limit else []
    began = time.monotonic()
    with home_for(args.home):
        from registry import adapters, connect

        if adapters.get(connect(), PARENT) is None:
            print(f"{PARENT}: training with the product's defaults ...", flush=True)
            train = ["--base", args.base, "--data", PARAMED / "train.jsonl", "--role", "translator"]
            train += ["--max-steps", args.parent_steps] if args.parent_steps else []
            run("training.train", *train, "--name", PARENT, "--skip-evaluation")
        if adapters.get(connect(), CHILD) is None:
            print(f"{CHILD}: GRPO for {args.grpo_steps} steps ...", flush=True)
            grpo = [
                "--method",
                "grpo",
                "--parent",
                PARENT,
                "--data",
                PARAMED / "train.jsonl",
                "--name",
                CHILD,
            ]
            grpo += ["--max-steps", args.grpo_steps, "--batch-size", "2", "--grad-accum", "1"]
            grpo += ["--rewards", "chrf=1,english=0.5", "--skip-evaluation", *args.grpo.split()]
            _, grpo_s = run("training.train", *grpo)
        else:
            grpo_s = None
        parent, child = adapters.require(connect(), PARENT), adapters.require(connect(), CHILD)
        decoded = {}
        for name, decoding in (
            (PARENT, "greedy"),
            (PARENT, "beams=2"),
            (CHILD, "greedy"),
            (CHILD, "beams=2"),
        ):
            print(f"{name} with {decoding} on dev ...", flush=True)
            decoded[name, decoding] = predictions(name, decoding, dev)
        n = len(decoded[PARENT, "greedy"][0])
        mbr_dev, picked = dev, list(range(n))
        if args.mbr_sentences and args.mbr_sentences < n:  # the first of each half, so both halves count
            each = args.mbr_sentences // 2
            picked = list(range(each)) + list(range(n // 2, n // 2 + each))
            subset = Path(os.environ["TRANSLATOR_HOME"]) / "dev-for-mbr.jsonl"
            records = [json.loads(line) for line in (PARAMED / "dev.jsonl").read_text().splitlines() if line]
            subset.write_text("".join(json.dumps(records[i], ensure_ascii=False) + "\n" for i in picked))
            mbr_dev = ["--data", subset, "--batch-size", args.batch_size]
        print(f"{PARENT} with {args.mbr} on {len(picked)} dev sentences ...", flush=True)
        decoded[PARENT, args.mbr] = predictions(PARENT, args.mbr, mbr_dev)
        decoded[PARENT, "beams=2 (MBR's sentences)"] = (
            [decoded[PARENT, "beams=2"][0][i] for i in picked],
            decoded[PARENT, "beams=2"][1] * len(picked) / n,
        )
        rewards = _reward_curve(child)
    first, second = slice(0, n // 2), slice(n // 2, n)
    m = len(decoded[PARENT, args.mbr][0])
    rows = [
        ("GRPO child vs parent, 2 beams", (CHILD, "beams=2"), (PARENT, "beams=2")),
        ("GRPO child vs parent, greedy", (CHILD, "greedy"), (PARENT, "greedy")),
        ("greedy vs 2 beams, parent", (PARENT, "greedy"), (PARENT, "beams=2")),
    ]
    mbr_row = (
        f"MBR ({args.mbr}) vs 2 beams, parent",
        (PARENT, args.mbr),
        (PARENT, "beams=2 (MBR's sentences)"),
    )
    print(f"\nParaMed dev, {n} sentences: the first {first.stop} choose, the last {n - first.stop} confirm.")
    steps, generations = child.metrics.get("steps"), child.hyperparameters.get("generations")
    parent_steps = parent.metrics.get("steps")
    print(f"Parent {PARENT} ({args.base}, SFT): {step_figures(parent)}, {parent_steps} steps of 16 pairs.")
    print(
        f"Child {CHILD}: GRPO, {steps} steps of 2 prompts x {generations} completions, rewards "
        f"{child.hyperparameters.get('rewards')}: {step_figures(child)}"
        + (f"; {grpo_s / 60:.1f} min in all" if grpo_s else "")
    )
    print(f"Mean reward per step (first 3, last 3): {rewards}")
    print(
        "| comparison | half | system BLEU | baseline BLEU | ΔBLEU [95%] | p | ΔchrF [95%] | p "
        "| English kept (system / baseline) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    halves = {label: (first, second) for label, _, _ in rows}
    halves[mbr_row[0]] = (slice(0, m // 2), slice(m // 2, m))
    for label, system, baseline in [*rows, mbr_row]:
        for half_name, half in zip(("choose", "confirm"), halves[label], strict=True):
            tested = compare(decoded[system][0], decoded[baseline][0], half)
            bleu, chrf = tested["bleu"], tested["chrf"]
            cells = [label, f"{half_name} ({tested['n']})", f"{bleu.system:.2f}", f"{bleu.baseline:.2f}"]
            for score in (bleu, chrf):
                interval = f"[{score.difference_low:+.2f}, {score.difference_high:+.2f}]"
                cells += [f"{score.difference:+.2f} {interval}", f"{score.p_value:.3f}"]
            cells.append(f"{tested['kept'][0]} / {tested['kept'][1]}")
            print("| " + " | ".join(cells) + " |")
    print("\n| decoding (parent) | dev seconds | per sentence |")
    print("|---|---|---|")
    for decoding in ("greedy", "beams=2", args.mbr):
        outputs, seconds = decoded[PARENT, decoding]
        print(f"| {decoding} | {seconds:.0f} ({len(outputs)} sentences) | {seconds / len(outputs):.2f} s |")
    print(f"\n2 cores; {(time.monotonic() - began) / 60:.1f} min in all")
    return 0


def _reward_curve(child) -> str:
    from registry import connect
    from registry import jobs as job_rows

    rewards = [m["extra"].get("reward") for m in job_rows.metrics_for(connect(), child.job_id)]
    rewards = [r for r in rewards if r is not None]
    shown = [f"{r:.3f}" for r in rewards[:3]] + ["…"] + [f"{r:.3f}" for r in rewards[-3:]]
    return " ".join(shown) if rewards else "none logged"


if __name__ == "__main__":
    os.environ.setdefault("TRANSLATOR_LANG", "en")
    sys.exit(main())
