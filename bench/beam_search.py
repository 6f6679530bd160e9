"""Greedy against beam search for a trained translator: BLEU / chrF on the ParaMed dev file and the
seconds per sentence, through the product's own evaluator (`training.evaluation.evaluate.score_records`, the
batched engine), each beam width against greedy by the paired bootstrap.

    .venv/bin/python bench/beam_search.py --home /work/bench_home --adapter paramed-sft
    .venv/bin/python bench/beam_search.py --home ... --adapter ... --beams 1,2,4,6 --dev-limit 60

The adapter must be registered in --home (bench/preference_gain.py trains `paramed-sft` there with
the product's defaults). Last line: the best BLEU per second of generation, against greedy.
"""

import argparse
import os
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

PARAMED_DEV = PROJECT_ROOT.parent / "shared" / "data" / "paramed" / "dev.jsonl"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, help="TRANSLATOR_HOME holding the adapter")
    parser.add_argument("--adapter", default="paramed-sft")
    parser.add_argument("--beams", default="1,2,4,6", help="beam widths; 1 is greedy, the baseline")
    parser.add_argument("--length-penalty", type=float, default=1.0)
    parser.add_argument("--dev-limit", type=int, default=0, help="dev sentences (0: all)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if not PARAMED_DEV.is_file():
        raise SystemExit(f"needs {PARAMED_DEV} (the shared ParaMed data)")
    from engine.models import models_dir

    os.environ.setdefault("TRANSLATOR_MODELS_DIR", str(models_dir()))
    os.environ["TRANSLATOR_HOME"] = args.home
    from engine.generation import ChatEngine
    from registry import adapters, connect
    from studio.roles import get_role
    from training.data.datasets import load_dataset
    from training.evaluation.evaluate import score_records
    from training.evaluation.significance import paired_bootstrap

    db = connect()
    adapter = adapters.require(db, args.adapter)
    role = get_role(db, adapter.role)
    records = load_dataset(str(PARAMED_DEV), limit=args.dev_limit or None).records
    engine = ChatEngine(adapter.base_model)
    engine.ensure_adapter(adapter)
    widths = [int(width) for width in args.beams.split(",")]
    results = {}
    for width in widths:
        decoding = role.decoding.with_changes(
            do_sample=False, num_beams=width, length_penalty=args.length_penalty
        )
        searching = role.__class__(**{**role.as_dict(), "decoding": decoding})
        started = time.perf_counter()
        scored = score_records(engine, records, role=searching, adapter=adapter, batch_size=args.batch_size)
        seconds = time.perf_counter() - started
        results[width] = (scored, seconds)
        print(
            f"beams {width}: BLEU {scored.scores['bleu']:.2f}, chrF {scored.scores['chrf']:.2f}, "
            f"{seconds / len(records):.2f} s per sentence",
            flush=True,
        )
    greedy, greedy_seconds = results[widths[0]]
    print(f"\n{args.adapter} ({adapter.base_model}), ParaMed dev, {len(records)} sentences, 2 cores")
    print(
        "| decoding | BLEU | chrF | ΔBLEU vs greedy [95%] | p | ΔchrF [95%] | p | s / sentence "
        "| time vs greedy |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    best = None
    for width in widths:
        scored, seconds = results[width]
        name = "greedy" if width == 1 else f"{width} beams (lp {args.length_penalty:g})"
        cells = [name]
        if width == widths[0]:
            cells += [f"{scored.scores['bleu']:.2f}", f"{scored.scores['chrf']:.2f}", "–", "–", "–", "–"]
        else:
            tested, _ = paired_bootstrap(scored.references, scored.predictions, greedy.predictions)
            bleu, chrf = tested["bleu"], tested["chrf"]
            cells += [
                f"{bleu.system:.2f} ± {bleu.system_ci:.2f}",
                f"{chrf.system:.2f} ± {chrf.system_ci:.2f}",
            ]
            for score in (bleu, chrf):
                cells += [
                    f"{score.difference:+.2f} [{score.difference_low:+.2f}, {score.difference_high:+.2f}]",
                    f"{score.p_value:.3f}",
                ]
            gain_per_second = bleu.difference / max(seconds - greedy_seconds, 1e-9)
            if bleu.significant and bleu.difference > 0 and (best is None or gain_per_second > best[1]):
                best = (width, gain_per_second)
        cells += [f"{seconds / len(records):.2f}", f"{seconds / greedy_seconds:.2f}x"]
        print("| " + " | ".join(cells) + " |")
    if best is None:
        print("no beam width beat greedy significantly on BLEU: greedy stays the translator's default")
    else:
        print(
            f"best BLEU gain per extra second: {best[0]} beams ({best[1]:+.3f} BLEU per second of generation)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
