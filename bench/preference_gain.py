"""Does preference tuning on a translator's own mistakes make it better? The product's recipe, end
to end through its own commands:

1. an SFT translator trained with the product's defaults on the ParaMed training pairs (the parent;
   reused when --home already has it);
2. its greedy translations of those same training sentences, and a preference pair wherever one
   differs from the reference (`python -m training.evaluation.mistakes`);
3. a preference job per variant on those pairs, continuing the parent (`--method dpo --parent ...`);
4. parent and each child translate the ParaMed dev file; the paired bootstrap (sacrebleu, 1,000
   resamples) gives the BLEU/chrF difference child - parent, its 95% interval and the p-value.

    .venv/bin/python bench/preference_gain.py                                  # DPO, the defaults
    .venv/bin/python bench/preference_gain.py --variants "dpo orpo kto dpo:beta=0.5"
    .venv/bin/python bench/preference_gain.py --home /work/bench_home          # reuse a parent

A variant is a method with optional settings: `dpo`, `dpo:loss-type=ipo`, `kto:beta=0.2,lr=1e-5`
(any training flag, without its dashes); variants are separated by spaces. Needs ../shared/data/paramed/.
"""

import argparse
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from bench.scratch import scratch_home  # noqa: E402

PARAMED = PROJECT_ROOT.parent / "shared" / "data" / "paramed"
PARENT = "paramed-sft"


def run(module: str, *args) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{module} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done, time.monotonic() - started


def parse_variant(text: str) -> tuple[str, list[str]]:
    """`dpo:beta=0.5,loss-type=ipo` -> ("dpo", ["--beta", "0.5", "--loss-type", "ipo"])."""
    method, _, settings = text.partition(":")
    flags = []
    for setting in filter(None, settings.split(",")):
        key, _, value = setting.partition("=")
        flags += [f"--{key.strip()}", value.strip()]
    return method.strip(), flags


def variant_name(text: str) -> str:
    return "paramed-" + "".join(c if c.isalnum() or c in "-." else "-" for c in text).strip("-")


@contextlib.contextmanager
def home_for(folder: str | None):
    if not folder:
        with scratch_home() as scratch:
            yield scratch
        return
    from engine.models import models_dir

    os.environ.setdefault("TRANSLATOR_MODELS_DIR", str(models_dir()))
    os.environ["TRANSLATOR_HOME"] = folder
    yield Path(folder)


def evaluation_file(name: str, dev: list) -> Path:
    from registry import adapters, connect
    from registry import evaluations as evaluation_rows

    run("training.evaluation.evaluate", "--adapter", name, *dev)
    adapter = adapters.require(connect(), name)
    return Path(evaluation_rows.for_adapter(connect(), adapter.id)[0].predictions_path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="builtin:gemma3-270m")
    parser.add_argument("--variants", default="dpo", help="methods with settings, separated by spaces")
    parser.add_argument("--home", default="", help="a TRANSLATOR_HOME to keep (and reuse its parent)")
    parser.add_argument("--limit", type=int, default=0, help="training sentences turned into pairs (0: all)")
    parser.add_argument("--dev-limit", type=int, default=0, help="dev sentences scored (0: all)")
    parser.add_argument("--batch-size", type=int, default=16, help="generation batch size")
    args = parser.parse_args()
    if not (PARAMED / "train.jsonl").is_file():
        raise SystemExit(f"needs {PARAMED}/train.jsonl and dev.jsonl (the shared ParaMed data)")
    dev = ["--data", PARAMED / "dev.jsonl", "--batch-size", args.batch_size]
    dev += ["--limit", args.dev_limit] if args.dev_limit else []
    with home_for(args.home):
        from registry import adapters, connect
        from training.evaluation.significance import compare_prediction_files

        parent = adapters.get(connect(), PARENT)
        if parent is None:
            print(f"{PARENT}: training with the product's defaults ...", flush=True)
            train = ["--base", args.base, "--data", PARAMED / "train.jsonl", "--role", "translator"]
            _, parent_s = run("training.train", *train, "--name", PARENT)
        else:
            parent_s = None
            print(f"{PARENT}: reused from {os.environ['TRANSLATOR_HOME']}", flush=True)
        print("its mistakes on the training sentences ...", flush=True)
        mistakes = ["--adapter", PARENT, "--data", PARAMED / "train.jsonl", "--batch-size", args.batch_size]
        mistakes += ["--limit", args.limit] if args.limit else []
        done, mistakes_s = run("training.evaluation.mistakes", *mistakes)
        pairs_file = re.search(r"(/\S+\.jsonl)", done.stdout).group(1)
        pair_count = sum(1 for line in Path(pairs_file).read_text(encoding="utf-8").splitlines() if line)
        print(f"  {pair_count} pairs in {mistakes_s:.0f} s: {pairs_file}", flush=True)
        print("parent on dev ...", flush=True)
        parent_file = evaluation_file(PARENT, dev)
        rows = []
        for text in args.variants.split():
            method, flags = parse_variant(text)
            name = variant_name(text)
            if adapters.get(connect(), name) is None:
                print(f"{text}: training ...", flush=True)
                train = ["--method", method, "--parent", PARENT, "--data", pairs_file, "--name", name]
                _, train_s = run("training.train", *train, "--skip-evaluation", *flags)
            else:
                train_s = None
            child = adapters.require(connect(), name)
            print(f"{text}: on dev ...", flush=True)
            tested, _ = compare_prediction_files(evaluation_file(name, dev), parent_file)
            rows.append((text, child, train_s, tested))
    n = sum(1 for line in parent_file.read_text(encoding="utf-8").splitlines() if line)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    parent_time = f"{parent_s / 60:.1f} min" if parent_s else "reused"
    print(f"\nParaMed dev, {n} sentences. Parent {PARENT} ({args.base}, SFT defaults): {parent_time}.")
    sentences = args.limit or "all"
    print(f"Pairs: its mistakes on {sentences} training sentences: {pair_count} pairs, {mistakes_s:.0f} s.")
    print(
        "| variant | lr | epochs | beta | train | held-out pref. acc. | parent BLEU | child BLEU "
        "| ΔBLEU [95%] | p | parent chrF | child chrF | ΔchrF [95%] | p |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for text, child, train_s, tested in rows:
        bleu, chrf = tested["bleu"], tested["chrf"]
        hp = child.hyperparameters
        cells = [
            text,
            f"{hp.get('lr', 0):g}",
            f"{hp.get('epochs', 0):g}",
            f"{hp.get('beta', 0):g}",
            f"{train_s / 60:.1f} min" if train_s else "reused",
        ]
        for score in (bleu, chrf):
            cells += [
                f"{score.baseline:.2f} ± {score.baseline_ci:.2f}",
                f"{score.system:.2f} ± {score.system_ci:.2f}",
                f"{score.difference:+.2f} [{score.difference_low:+.2f}, {score.difference_high:+.2f}]",
                f"{score.p_value:.3f}",
            ]
        print("| " + " | ".join(cells) + " |")
    print(f"\n2 cores; peak RSS of the largest step: {peak_mib:.0f} MiB")
    print(json.dumps({t: {k: round(v.difference, 3) for k, v in s.items()} for t, _, _, s in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
