"""The GPU checks in one run, one table: the seeds' architectures at full size with random weights.

    bash bench/gpu_suite.sh             # a CUDA machine: 298 s for 12 rows on one H200 (2026-12-04)
    bash bench/gpu_suite.sh --smoke     # the same steps on tiny configs on the CPU (checks the script)

Models: Llama-3.2-3B from its published config, Yuan2-2B (the sizes in ../shared/yuan2/README.md,
our port of the architecture), random weights in bf16, the built-in model's tokenizer (Llama) or a
sentencepiece one trained here (Yuan). Steps, each in its own process, each a row:
1. tutorial recipe vs ours (bench/train_throughput.py): tokens/s, model FLOPs utilisation
   (6 x parameters x tokens/s over the GPU's dense bf16 peak), peak memory, losses;
2. QLoRA 4-bit: the real trainer with --quantize 4bit, its peak GPU memory (goal for 3B: <= 8 GB),
   as memory decides on this card and (3B) with the settings an 8 GB card gets;
3. FSDP (2+ GPUs: it shards over processes) and DeepSpeed ZeRO-3 (one GPU, when deepspeed is
   installed) as short smoke runs of the real trainer;
4. merge the QLoRA adapter into the bf16 base and answer one request through our API server;
5. DDP scaling (bench/ddp_scaling.py) when there is more than one GPU.
A step that cannot run here is a row that says why. Without CUDA (and without --smoke) it refuses.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARAMED_TRAIN = ROOT.parent / "shared" / "data" / "paramed" / "train.jsonl"
SAMPLE = ROOT / "data" / "translator_sample.jsonl"
# dense bf16 peaks (no sparsity), by the name torch reports
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12}
LLAMA_3B = {  # meta-llama/Llama-3.2-3B-Instruct config.json
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 128256,
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_hidden_layers": 28,
    "num_attention_heads": 24,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "tie_word_embeddings": True,
    "hidden_act": "silu",
}
YUAN_2B = {"vocab_size": 135040, "hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 32}
YUAN_2B_EXTRA = {"intermediate_size": 8192}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny configs on the CPU: checks the script")
    parser.add_argument("--n", type=int, default=64, help="examples per throughput run")
    parser.add_argument("--keep", help="build the models into this folder and keep them")
    parser.add_argument("--tokenizer", help="the Llama tokenizer folder (default: the built-in one)")
    parser.add_argument("--logs", help="write each step's output into this folder")
    args = parser.parse_args()
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print(
            "gpu_suite: refused: no CUDA GPU here (torch.cuda.is_available() is False). Run it on a GPU "
            "machine; `bash bench/gpu_suite.sh --smoke` runs the same steps on tiny configs on the CPU.",
            file=sys.stderr,
        )
        return 2
    gpus = torch.cuda.device_count() if not args.smoke else 0
    name = torch.cuda.get_device_name(0) if gpus else "CPU (smoke)"
    peak = next((flops for key, flops in PEAK_BF16.items() if key in name), None)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    scratch = Path(args.keep or tempfile.mkdtemp(prefix="gpu-suite-"))
    env = {
        **os.environ,
        "TRANSLATOR_HOME": str(scratch / "home"),
        "TRANSFORMERS_VERBOSITY": "error",
    }
    from engine.models import models_dir

    env.setdefault("TRANSLATOR_MODELS_DIR", str(models_dir()))
    data = str(PARAMED_TRAIN if PARAMED_TRAIN.is_file() else SAMPLE)
    if args.logs:
        LOGS["folder"] = Path(args.logs)
        LOGS["folder"].mkdir(parents=True, exist_ok=True)
    rows = _Rows()
    started = time.monotonic()
    print(f"gpu_suite on {name} x{max(gpus, 1)}, commit {commit.stdout.strip()}, {time.strftime('%Y-%m-%d')}")
    llama = scratch / "llama-3.2-3b"
    # the 3B rows first (the goals), so that a run cut short still has them
    for model in ("llama-3.2-3b", "yuan2-2b"):
        folder = scratch / model
        if not folder.is_dir():
            build(model, folder, tiny=args.smoke, tokenizer=args.tokenizer)
        parameters = count_parameters(folder)
        rows += throughput(model, folder, data, args.n if not args.smoke else 8, parameters, peak, env)
        rows.append(qlora(model, folder, data, env, smoke=args.smoke))
        if model.startswith("llama"):
            rows.append(qlora(model, folder, data, env, smoke=args.smoke, small_card=True))
            rows.append(merge_and_serve(scratch, env, smoke=args.smoke))
    rows.append(fsdp(llama, data, env, gpus, smoke=args.smoke))
    rows.append(zero3(llama, data, env, smoke=args.smoke))
    if gpus > 1:
        rows.append(ddp_scaling(llama, data, env, gpus))
    else:
        rows.append(("DDP scaling", "llama-3.2-3b", "skipped", "one GPU here: needs two or more"))
    print()
    print("| step | model | result | figures |")
    print("|---|---|---|---|")
    for step, model, result, figures in rows:
        print(f"| {step} | {model} | {result} | {figures} |")
    print(f"\n{len(rows)} rows in {time.monotonic() - started:.0f} s")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if any(row[2] == "failed" for row in rows) else 0


LOGS: dict = {}


class _Rows(list):
    """The table's rows, each also printed as it comes (a run cut short still shows what it measured)."""

    def append(self, row: tuple) -> None:
        print("row:", " | ".join(row), flush=True)
        super().append(row)

    def __iadd__(self, rows):
        for row in rows:
            self.append(row)
        return self


def build(model: str, folder: Path, tiny: bool, tokenizer: str | None = None) -> None:
    """Random weights of the architecture at full size (bf16 on the GPU) with a tokenizer."""
    import torch

    from engine import catalogue, models

    folder.mkdir(parents=True)
    device = "cuda" if torch.cuda.is_available() and not tiny else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if not model.startswith("llama"):
        builtin = None
    elif tokenizer:
        builtin = Path(tokenizer)
    else:
        builtin = models.resolve_model_dir(catalogue.parse_model_id("builtin"), progress=lambda *_: None)
    torch.manual_seed(0)
    if model.startswith("llama"):
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        settings = {**LLAMA_3B, **(TINY | {"num_key_value_heads": 2, "head_dim": 16} if tiny else {})}
        with torch.device(device):
            network = LlamaForCausalLM(LlamaConfig(**settings)).to(dtype)
        AutoTokenizer.from_pretrained(builtin).save_pretrained(folder)
    else:
        from engine import yuan

        golden = json.loads((ROOT.parent / "shared" / "yuan2" / "golden_reset" / "config.json").read_text())
        settings = {**golden, **YUAN_2B, **YUAN_2B_EXTRA, **(TINY | {"vocab_size": 320} if tiny else {})}
        settings.pop("auto_map", None)
        with torch.device(device):
            network = yuan.YuanForCausalLM(yuan.YuanConfig(**settings)).to(dtype)
        yuan_tokenizer(folder)
    network.save_pretrained(folder)
    del network
    if device == "cuda":
        torch.cuda.empty_cache()


def yuan_tokenizer(folder: Path) -> None:
    """A sentencepiece tokenizer laid out as Yuan2 ships it (LlamaTokenizer, <eod> and the markup)."""
    import io

    import sentencepiece

    from engine import yuan

    sentences = [json.loads(line)["input"] for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=320,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=0.98,
        user_defined_symbols=["<eod>", *yuan.SPECIAL_TOKENS],
        minloglevel=2,
    )
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def count_parameters(folder: Path) -> int:
    from training.parallel import memory

    return memory.shape_of(folder).parameters


def run(command: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if LOGS:
        LOGS["count"] = LOGS.get("count", 0) + 1
        name = re.sub(r"[^\w.-]+", "_", " ".join(Path(part).name for part in command[1:4]))[:80]
        (LOGS["folder"] / f"{LOGS['count']:02d}_{name}.log").write_text(
            f"$ {' '.join(command)}\nexit {result.returncode} after {time.monotonic() - started:.1f} s\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n"
        )
    print(f"  ({time.monotonic() - started:.0f} s: {' '.join(command[1:4])})", flush=True)
    return result


def failed(step: str, model: str, result: subprocess.CompletedProcess) -> tuple:
    tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
    return (step, model, "failed", f"exit {result.returncode}: {tail[0][:200]}")


def throughput(model: str, folder: Path, data: str, n: int, parameters: int, peak, env) -> list[tuple]:
    command = [sys.executable, "bench/train_throughput.py", "--base", str(folder), "--data", data]
    result = run([*command, "--n", str(n), "--repeats", "1", "--recipes", "tutorial,ours"], env)
    if result.returncode:
        return [failed("tutorial vs ours", model, result)]
    rows = []
    for recipe in ("tutorial", "ours"):
        line = re.search(rf"^\s*{recipe}: ([\d.]+) tok/s all.*$", result.stdout, re.M)
        if not line:
            rows.append((f"{recipe} recipe", model, "failed", "no tokens/s line"))
            continue
        tokens_per_second = float(line.group(1))
        memory = re.search(r"peak CUDA (\d+) MB", line.group(0)) or re.search(
            r"peak RSS (\d+) MB", line.group(0)
        )
        loss = re.search(r"mean loss ([\d.]+)", line.group(0))
        mfu = f"{6 * parameters * tokens_per_second / peak:.1%}" if peak else "n/a (unknown peak)"
        rows.append(
            (
                f"{recipe} recipe",
                model,
                "ran",
                f"{tokens_per_second:,.0f} tok/s, MFU {mfu}, peak {memory.group(1) if memory else '?'} MB, "
                f"mean loss {loss.group(1) if loss else '?'}, {parameters / 1e6:,.0f}M parameters",
            )
        )
    ratio = re.search(r"runs at ([\d.]+)x the tutorial", result.stdout)
    rows.append(
        (
            "ours / tutorial",
            model,
            "ran",
            f"{ratio.group(1)}x tokens/s{' (goal for 3B: >= 2x)' if model.startswith('llama') else ''}"
            if ratio
            else "no ratio line",
        )
    )
    return rows


def train(
    folder: Path, data: str, env: dict, name: str, *extra: str
) -> tuple[subprocess.CompletedProcess, dict]:
    command = [sys.executable, "-m", "training.train", "--base", str(folder), "--data", data, "--name", name]
    command += ["--max-steps", "4", "--limit", "64", "--skip-evaluation", *extra]
    result = run(command, env)
    metrics = {}
    if result.returncode == 0:
        probe = "from registry import adapters, connect; import json; "
        probe += f"print(json.dumps(adapters.get(connect(), {name!r}).metrics))"
        read = run([sys.executable, "-c", probe], env)
        metrics = json.loads(read.stdout) if read.returncode == 0 else {}
    return result, metrics


def peak_of(metrics: dict) -> str:
    if metrics.get("peak_gpu_mb"):  # the trainer's own record (training/trainer/fit.py)
        estimate = metrics.get("estimated_peak_mb")
        estimated = f" (estimated {estimate:,.0f})" if estimate else ""
        return f"peak GPU {metrics['peak_gpu_mb']:,.0f} MB{estimated}"
    return f"peak RSS {metrics.get('peak_rss_mb', 0):,.0f} MB"


def qlora(model: str, folder: Path, data: str, env: dict, smoke: bool, small_card: bool = False) -> tuple:
    """QLoRA as memory decides on this card, or (`small_card`) as an 8 GB card gets it: one example
    per micro-batch and checkpointing on (a big card keeps micro-batches of 4 without checkpointing)."""
    name, step = (
        (f"q4-small-{model}", "QLoRA 4-bit, micro-batch 1 + checkpointing")
        if small_card
        else (
            f"q4-{model}",
            "QLoRA 4-bit, as memory decides",
        )
    )
    extra = ["--micro-batch", "1", "--gradient-checkpointing", "on"] if small_card else []
    result, metrics = train(folder, data, env, name, "--quantize", "4bit", *extra)
    if result.returncode:
        return failed(step, model, result)
    goal = " (goal for 3B: <= 8,192 MB)" if model.startswith("llama") and not smoke else ""
    return (step, model, "ran", f"{peak_of(metrics)}{goal}, {metrics.get('steps')} steps")


def fsdp(folder: Path, data: str, env: dict, gpus: int, smoke: bool) -> tuple:
    if not smoke and gpus < 2:
        return ("FSDP", "llama-3.2-3b", "skipped", "one GPU here: FSDP shards over two or more processes")
    result, metrics = train(folder, data, env, "fsdp", "--processes", "2", "--strategy", "fsdp")
    if result.returncode:
        return failed("FSDP", "llama-3.2-3b", result)
    return (
        "FSDP, 2 processes",
        "llama-3.2-3b",
        "ran",
        f"{peak_of(metrics)} on rank 0, {metrics.get('steps')} steps",
    )


def zero3(folder: Path, data: str, env: dict, smoke: bool) -> tuple:
    import importlib.util

    if smoke:
        return ("ZeRO-3", "llama-3.2-3b", "skipped", "GPU only (refused on the CPU)")
    if importlib.util.find_spec("deepspeed") is None:
        return ("ZeRO-3", "llama-3.2-3b", "skipped", "deepspeed is not installed on this machine")
    result, metrics = train(folder, data, env, "zero3", "--strategy", "zero3")
    if result.returncode:
        return failed("ZeRO-3", "llama-3.2-3b", result)
    return ("ZeRO-3, 1 GPU", "llama-3.2-3b", "ran", f"{peak_of(metrics)}, {metrics.get('steps')} steps")


def merge_and_serve(scratch: Path, env: dict, smoke: bool) -> tuple:
    """The QLoRA adapter merged into the base in bf16, then one request through our API server."""
    merged = scratch / "merged-llama"
    shutil.rmtree(merged, ignore_errors=True)
    dtype = "fp32" if smoke else "bf16"
    result = run(
        [
            sys.executable,
            "-m",
            "exporters.merge",
            "--adapter",
            "q4-llama-3.2-3b",
            "--out",
            str(merged),
            "--dtype",
            dtype,
        ],
        env,
    )
    if result.returncode:
        return failed("merge + API", "llama-3.2-3b", result)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    device = "cpu" if smoke else "cuda"
    command = [sys.executable, "-m", "serving.server", "serve", "--base", str(merged), "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--device", device],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                listed = urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None:
                    return (
                        "merge + API",
                        "llama-3.2-3b",
                        "failed",
                        f"server exited: {server.stderr.read()[-200:]}",
                    )
                time.sleep(1)
        body = {
            "model": json.loads(listed)["data"][0]["id"],
            "messages": [{"role": "user", "content": "The patient has a fever."}],
        }
        body |= {"max_tokens": 32, "temperature": 0}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        sent = time.monotonic()
        reply = json.loads(urllib.request.urlopen(request, timeout=300).read())
        seconds = time.monotonic() - sent
        tokens = reply["usage"]["completion_tokens"]
        return (
            "merge + API",
            "llama-3.2-3b",
            "ran",
            f"merged in {dtype}; {tokens} tokens in {seconds:.2f} s",
        )
    except Exception as error:  # the row says what went wrong; the table still prints
        return ("merge + API", "llama-3.2-3b", "failed", f"{type(error).__name__}: {str(error)[:200]}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def ddp_scaling(folder: Path, data: str, env: dict, gpus: int) -> tuple:
    processes = min(gpus, 8)
    result = run(
        [
            sys.executable,
            "bench/ddp_scaling.py",
            "--base",
            str(folder),
            "--data",
            data,
            "--processes",
            str(processes),
        ],
        env,
    )
    if result.returncode:
        return failed("DDP scaling", "llama-3.2-3b", result)
    last = result.stdout.strip().splitlines()[-1]
    return (f"DDP scaling, {processes} GPUs", "llama-3.2-3b", "ran", last[:200])


if __name__ == "__main__":
    sys.exit(main())
