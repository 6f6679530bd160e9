"""Batched evaluation vs one generation per sentence, measured in the same run.

    .venv/bin/python bench/eval_batching.py            # 20 ParaMed dev sentences (or the bundled sample)
    .venv/bin/python bench/eval_batching.py --n 40 --batch-size 20 --repeats 3

Both paths use the engine, the built-in model, the translator role, greedy decoding and the same
per-sentence length cap as `training.evaluation.evaluate`; the outputs are compared so the speed-up is not
bought with different answers. Prints medians over --repeats and the ratio as the last line.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.generation import ChatEngine  # noqa: E402
from engine.roles import TRANSLATOR  # noqa: E402
from training.data.datasets import load_dataset  # noqa: E402
from training.evaluation.evaluate import length_caps  # noqa: E402

PARAMED_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "paramed" / "dev.jsonl"
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "translator_sample.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--base", default="builtin")
    args = parser.parse_args()
    data = PARAMED_DEV if PARAMED_DEV.is_file() else SAMPLE
    records = load_dataset(data, limit=args.n).records
    engine = ChatEngine(args.base)
    texts = [r["input"] for r in records]
    greedy = TRANSLATOR.decoding
    caps = length_caps(engine.tokenizer, [r["output"] for r in records], greedy.max_new_tokens)
    one_by_one_times, batched_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        single = [
            engine.generate_batch([t], role=TRANSLATOR, decoding=greedy, batch_size=1, max_new_tokens=[c])[0]
            for t, c in zip(texts, caps, strict=True)
        ]
        one_by_one_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        batched = engine.generate_batch(
            texts, role=TRANSLATOR, decoding=greedy, batch_size=args.batch_size, max_new_tokens=caps
        )
        batched_times.append(time.perf_counter() - start)
    same = sum(a == b for a, b in zip(single, batched, strict=True))
    one, many = statistics.median(one_by_one_times), statistics.median(batched_times)
    print(f"data: {data.name}, {len(texts)} sentences, model {engine.base_model_id} on {engine.device}")
    print(
        f"one by one: median {one:.1f} s over {args.repeats} runs {[round(t, 1) for t in one_by_one_times]}"
    )
    print(f"batched ({args.batch_size}): median {many:.1f} s {[round(t, 1) for t in batched_times]}")
    print(f"identical outputs: {same}/{len(texts)}")
    print(f"batched evaluation is {one / many:.2f}x faster than one generation per sentence")


if __name__ == "__main__":
    main()
