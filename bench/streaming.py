"""The engine's streaming path vs a raw `model.generate` on the same prompt and settings, same run.

    .venv/bin/python bench/streaming.py                   # built-in model, 64 new tokens, 5 repeats
    .venv/bin/python bench/streaming.py --adapters 2 --repeats 9

Raw: `model.generate` with a token-level streamer that only records when the first token arrives.
Ours: `ChatEngine.stream` as the chat page uses it (token loop in the reader's thread, incremental
detokenisation, per-thread adapter selection, lock per step); with --adapters N, N adapters are
loaded and both paths answer as the base model. Greedy decoding, so both produce the same tokens
(checked). Tokens/s = generated tokens / wall time of the whole reply; first token = time to the
first streamed text. Medians over alternating repeats; the last line is the tokens/s ratio.
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

PROMPT = "Explain in a few sentences why a fever makes people feel tired."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="builtin")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--adapters", type=int, default=0, help="adapters loaded in the engine meanwhile")
    args = parser.parse_args()
    with scratch_home() as scratch:
        run(args, scratch)


def run(args, scratch: Path) -> None:
    import torch
    from transformers.generation.streamers import BaseStreamer

    from engine import formats
    from engine.generation import ChatEngine
    from engine.roles import ASSISTANT
    from engine.routing import thread_choice
    from registry import adapters as adapter_rows
    from registry import connect

    engine = ChatEngine(args.base)
    if args.adapters:
        db = connect()
        for name in make_adapters(engine, db, scratch, args.adapters):
            engine.ensure_adapter(adapter_rows.get(db, name))
    decoding = ASSISTANT.decoding.with_changes(do_sample=False, max_new_tokens=args.max_new_tokens)
    ids = torch.tensor([engine.prompt_ids(ASSISTANT, PROMPT)], device=engine.model.device)
    stop_ids = formats.stop_token_ids(engine.tokenizer, engine.prompt_format, engine.model)

    class FirstToken(BaseStreamer):
        def __init__(self):
            self.calls, self.first = 0, None

        def put(self, value):
            self.calls += 1
            if self.calls == 2:  # the first call carries the prompt
                self.first = time.perf_counter()

        def end(self):
            pass

    def raw():
        streamer = FirstToken()
        start = time.perf_counter()
        with torch.inference_mode():
            # with adapters loaded, answer as the base exactly as the engine selects it
            thread_choice.adapter = engine._choice_for(None)
            output = engine.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                streamer=streamer,
                eos_token_id=stop_ids,
                pad_token_id=engine.tokenizer.pad_token_id,
                max_new_tokens=args.max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                repetition_penalty=decoding.repetition_penalty,
            )
            thread_choice.adapter = None
        seconds = time.perf_counter() - start
        new = output[0, ids.shape[1] :]
        text = engine.tokenizer.decode(new, skip_special_tokens=True)
        return len(new), seconds, streamer.first - start, text

    def ours():
        start, first, pieces = time.perf_counter(), None, []
        for piece in engine.stream(PROMPT, role=ASSISTANT, decoding=decoding):
            first = first or time.perf_counter()
            pieces.append(piece)
        return time.perf_counter() - start, first - start, "".join(pieces)

    raw(), ours()  # warm-up
    raw_runs, our_runs = [], []
    for repeat in range(args.repeats):
        for name in ("raw", "ours") if repeat % 2 == 0 else ("ours", "raw"):
            if name == "raw":
                raw_runs.append(raw())
            else:
                our_runs.append(ours())
    tokens, _, _, raw_text = raw_runs[0]
    same = all(text.strip() == raw_text.strip() for *_, text in our_runs)
    raw_rate = statistics.median(tokens / seconds for _, seconds, _, _ in raw_runs)
    our_rate = statistics.median(tokens / seconds for seconds, _, _ in our_runs)
    raw_first = statistics.median(first for _, _, first, _ in raw_runs)
    our_first = statistics.median(first for _, first, _ in our_runs)
    print(
        f"model {engine.base_model_id} on {engine.device}; {tokens} new tokens, greedy; "
        f"{args.adapters} adapters loaded; {args.repeats} repeats; identical text: {same}"
    )
    print(f"raw generate: {raw_rate:.1f} tok/s, first token after {raw_first * 1000:.0f} ms")
    print(f"engine.stream: {our_rate:.1f} tok/s, first text after {our_first * 1000:.0f} ms")
    print(f"streaming runs at {our_rate / raw_rate:.2f}x raw generate's tokens/s")


if __name__ == "__main__":
    main()
