"""Answering with a different adapter than the previous request: our engine vs reloading, same run.

    .venv/bin/python bench/adapter_switch.py              # N = 2 and 10 adapters on the built-in model
    .venv/bin/python bench/adapter_switch.py --counts 10 --requests 60 --reloads 8

N LoRA adapters (r=8 on q/k/v/o/gate/up/down, random non-zero weights) are saved as safetensors and
registered in a scratch registry. Every request names a different adapter than the one before.
- ours: the resident engine. Switch = what a chat request does before computing: read the adapter's
  row from the registry, `ensure_adapter` (loaded once, then only a version check) and select it
  for the calling thread. Time to first token = a whole `stream()` call cut after 1 token.
- tutorial: load the base model, then `PeftModel.from_pretrained(adapter)`, for every request;
  its time to first token adds the same 1-token generation.
Medians and p95 are printed; the last line is the ratio of the median switch times.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from bench.scratch import make_adapters, scratch_home  # noqa: E402

PROMPT = "The patient has a fever and a cough."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="2,10", help="numbers of registered adapters to try")
    parser.add_argument("--requests", type=int, default=40, help="switching requests per count (ours)")
    parser.add_argument("--first-token-requests", type=int, default=6)
    parser.add_argument("--reloads", type=int, default=5, help="requests per count the tutorial way")
    parser.add_argument("--base", default="builtin")
    args = parser.parse_args()
    with scratch_home() as scratch:
        run(args, scratch)


def run(args, scratch: Path) -> None:
    import torch
    from transformers.utils import logging

    from engine.generation import ChatEngine
    from engine.roles import TRANSLATOR
    from registry import adapters as adapter_rows
    from registry import connect

    logging.disable_progress_bar()  # one "Loading weights" bar per reload would drown the numbers
    db = connect()
    engine = ChatEngine(args.base)
    one_token = TRANSLATOR.decoding.with_changes(max_new_tokens=1)
    counts = [int(n) for n in args.counts.split(",")]
    names = make_adapters(engine, db, scratch, max(counts))
    print(f"model {engine.base_model_id} on {engine.device} ({str(engine.dtype).removeprefix('torch.')})")
    ours_switch_medians, reload_medians = [], []
    for count in counts:
        start = time.perf_counter()
        for name in names[:count]:
            engine.ensure_adapter(adapter_rows.get(db, name))
        load_once = time.perf_counter() - start
        cycle = [names[i % count] for i in range(args.requests)]

        switches = []
        for name in cycle:
            start = time.perf_counter()
            row = adapter_rows.get(db, name)
            engine.ensure_adapter(row)
            engine._choice_for(row)  # the per-thread selection stream() makes
            switches.append(time.perf_counter() - start)

        first_tokens = []
        for name in cycle[: args.first_token_requests]:
            start = time.perf_counter()
            "".join(
                engine.stream(PROMPT, role=TRANSLATOR, adapter=adapter_rows.get(db, name), decoding=one_token)
            )
            first_tokens.append(time.perf_counter() - start)

        reloads, reload_first_tokens = [], []
        for name in cycle[: args.reloads]:
            start = time.perf_counter()
            model = reload_the_tutorial_way(engine, adapter_rows.get(db, name).path)
            reloads.append(time.perf_counter() - start)
            ids = torch.tensor([engine.prompt_ids(TRANSLATOR, PROMPT)])
            with torch.inference_mode():
                model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=False
                )
            reload_first_tokens.append(time.perf_counter() - start)
            del model

        ours_switch_medians.append(statistics.median(switches))
        reload_medians.append(statistics.median(reloads))
        print(f"N={count}: loading the {count} adapters once took {load_once * 1000:.0f} ms")
        print(f"  ours     switch {_stats(switches)}; time to first token {_stats(first_tokens)}")
        print(f"  tutorial reload {_stats(reloads)}; time to first token {_stats(reload_first_tokens)}")
        first_token_ratio = statistics.median(reload_first_tokens) / statistics.median(first_tokens)
        switch_ratio = statistics.median(reloads) / statistics.median(switches)
        print(f"  switch {switch_ratio:,.0f}x faster; first token {first_token_ratio:.1f}x sooner")
    ratio = reload_medians[-1] / ours_switch_medians[-1]
    print(
        f"N={counts[-1]}: switching adapters takes {ours_switch_medians[-1] * 1000:.2f} ms (median), "
        f"{ratio:,.0f}x faster than reloading base + adapter"
    )


def reload_the_tutorial_way(engine, adapter_path: str):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(engine.model_dir, dtype=engine.dtype).to(engine.device)
    return PeftModel.from_pretrained(base, adapter_path).eval()


def _stats(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered) * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms (n={len(ordered)})"


if __name__ == "__main__":
    main()
