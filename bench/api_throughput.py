"""The API server's tokens/s against the engine in-process, and 8 concurrent clients against one.

    .venv/bin/python bench/api_throughput.py                  # built-in model, 3 adapters, 48 tokens
    .venv/bin/python bench/api_throughput.py --base builtin:gemma3-270m --device cuda --dtype bf16

One run, three measurements, alternated for --repeats rounds (medians; never two at once, they would
share the cores):
1. in-process: `ChatEngine.stream` (what the chat page runs) answers PROMPTS one after the other
   with adapter bench-0, greedy;
2. one client: the same prompts and adapter through `python -m serving.server serve` and the
   official openai client (non-streaming), one request at a time;
3. eight clients: eight threads, each sending the same prompts, client i through
   [bench-0, bench-1, bench-2, the base][i % 4], all at once.
Tokens are the server's `usage.completion_tokens`; greedy replies are checked equal to in-process.
Printed ratios: one client ÷ in-process (goal ≥ 0.9), eight clients' total ÷ one client (goal ≥ 3
on this CPU).
"""

import argparse
import concurrent.futures
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from bench.scratch import make_adapters, scratch_home  # noqa: E402

PROMPTS = [
    "Write a short story about a doctor in a small village.",
    "Explain why a fever makes people feel tired.",
    "List some advice for sleeping well, with reasons.",
    "Describe the ocean to someone who has never seen it.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="builtin")
    parser.add_argument("--device")
    parser.add_argument("--dtype")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with scratch_home() as scratch:
        run(args, scratch)


def run(args, scratch: Path) -> None:
    import openai

    from engine.generation import ChatEngine
    from registry import adapters as adapter_rows
    from registry import connect
    from studio.roles import get_role

    db = connect()
    engine = ChatEngine(args.base, device=args.device, dtype=args.dtype)
    names = make_adapters(engine, db, scratch, 3)
    adapter = adapter_rows.get(db, names[0])
    role = get_role(db, adapter.role)  # what the server answers bench-0 with
    decoding = role.decoding.with_changes(do_sample=False, max_new_tokens=args.max_tokens)
    models = [*names, engine.base_model_id]

    port = _free_port()
    log = open(scratch / "server.log", "wb")  # noqa: SIM115 (open while the server runs)
    command = [sys.executable, "-m", "serving.server", "serve", "--base", args.base, "--port", str(port)]
    command += ["--device", args.device] if args.device else []
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
    try:
        _wait_healthy(port, server)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)

        def ask(model: str, prompt: str):
            reply = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                temperature=0,
                max_tokens=args.max_tokens,
            )
            return reply.choices[0].message.content, reply.usage.completion_tokens

        def in_process_round():
            return [engine.reply(p, role=role, adapter=adapter, decoding=decoding) for p in PROMPTS]

        def one_client_round():
            return [ask(names[0], p) for p in PROMPTS]

        def client_run(index: int) -> int:
            model = models[index % len(models)]
            return sum(ask(model, p)[1] for p in PROMPTS[index % 4 :] + PROMPTS[: index % 4])

        def many_clients_round():
            with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                return sum(pool.map(client_run, range(args.clients)))

        in_process_round()  # warm-ups: every adapter loaded on both sides before the clock starts
        for model in models:
            ask(model, "Hello")
        local, rounds = None, {"in-process": [], "one client": [], "clients": []}
        for _ in range(args.repeats):  # alternating, so a slow minute of this shared machine hits both
            seconds, local = _timed(in_process_round)
            rounds["in-process"].append(seconds)
            seconds, single = _timed(one_client_round)
            rounds["one client"].append(seconds)
            seconds, many_tokens = _timed(many_clients_round)
            rounds["clients"].append(seconds)
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()

    tokens = sum(n for _, n in single)
    same = sum(text.strip() == mine.strip() for (text, _), mine in zip(single, local, strict=True))
    in_process = tokens / statistics.median(rounds["in-process"])
    one = tokens / statistics.median(rounds["one client"])
    many = many_tokens / statistics.median(rounds["clients"])
    print(f"model {args.base}, {len(PROMPTS)} prompts, <= {args.max_tokens} tokens each", end=", ")
    print(f"temperature 0 to a {role.name} adapter: {decoding.key}", end=", ")
    print(f"{args.repeats} rounds")
    print(f"in-process: {in_process:.1f} tok/s  {_seconds(rounds['in-process'])}")
    print(f"one API client: {one:.1f} tok/s  {_seconds(rounds['one client'])}", end=" ")
    print(f"({same}/{len(PROMPTS)} replies identical to in-process)")
    print(f"{args.clients} API clients: {many:.1f} tok/s in all  {_seconds(rounds['clients'])}")
    print(f"ratio one client / in-process: {one / in_process:.2f} (goal >= 0.9)")
    print(f"ratio {args.clients} clients / one client: {many / one:.2f} (goal >= 3)")


def _timed(action):
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def _seconds(values: list[float]) -> str:
    return "[" + ", ".join(f"{value:.1f} s" for value in values) + "]"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(port: int, server: subprocess.Popen) -> None:
    deadline = time.time() + 300
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the server did not start in 300 s")


if __name__ == "__main__":
    main()
