"""The output layer's product on this CPU for 1 to 16 rows, plain and padded to 16 rows
(engine/head_rows.py): why the engine pads a few rows to 16.

    .venv/bin/python bench/head_rows.py                      # Gemma-3-270m's shape: 262,144 × 640
    .venv/bin/python bench/head_rows.py --vocabulary 49152 --hidden 576   # SmolLM2-135M's

Medians of --repeats products, the two ways alternated for each row count.
"""

import argparse
import statistics
import time


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocabulary", type=int, default=262144)
    parser.add_argument("--hidden", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    weight = torch.randn(args.vocabulary, args.hidden)
    print(f"output layer {args.vocabulary} × {args.hidden}, float32, {torch.get_num_threads()} threads")
    print("rows  plain ms  padded to 16 ms  ratio")
    for rows in range(1, 17):
        hidden = torch.randn(rows, args.hidden)
        padded = torch.nn.functional.pad(hidden, (0, 0, 0, 16 - rows))
        plain_times, padded_times = [], []
        for _ in range(args.repeats):
            plain_times.append(_timed(torch.nn.functional.linear, hidden, weight))
            padded_times.append(_timed(torch.nn.functional.linear, padded, weight))
        plain, pad = statistics.median(plain_times), statistics.median(padded_times)
        print(f"{rows:4d}  {plain:8.1f}  {pad:15.1f}  {plain / pad:5.2f}")


def _timed(action, *args) -> float:
    started = time.perf_counter()
    action(*args)
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    main()
