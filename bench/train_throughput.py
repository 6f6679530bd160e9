"""Our trainer's recipe vs the tutorials', on the same model, data and examples, in the same run.

    .venv/bin/python bench/train_throughput.py --quick        # < 3 min on 2 CPU cores, built-in model
    .venv/bin/python bench/train_throughput.py --n 64 --repeats 3
    .venv/bin/python bench/train_throughput.py --base modelscope:IEITYuan/Yuan2-2B-Mars-hf --n 256  # GPU

Tutorial recipe: `DataCollatorForSeq2Seq(padding=True)`, random batches, gradient checkpointing on.
Ours: what `python -m training.train` picks (`training.data.batching`): packed padding-free batches where
exact (length-grouped padded batches for Yuan), logits only where a target follows, checkpointing
for >1B models on GPU and on the CPU, one example per micro-batch on the CPU (same examples per
step). On the CPU also "ours-fast": ours with checkpointing off, to show what memory buys speed.
Everything else is shared: LoRA r=8/alpha 32/dropout 0.1 on q/k/v/o/gate/up/down, lr 1e-4,
examples per step, seed, dtype. Each recipe runs in its own process (so peak RSS is its own), each
run on a freshly loaded model; medians over the runs are reported. Last line: the tokens/s ratio.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARAMED_TRAIN = ROOT.parent / "shared" / "data" / "paramed" / "train.jsonl"
SAMPLE = ROOT / "data" / "translator_sample.jsonl"
RECIPES = ("tutorial", "ours", "ours-checkpointing")
# each CPU speed lever on top of ours, one at a time (`--levers`): bf16 autocast, the eager
# attention instead of SDPA, one thread instead of one per physical core, LoRA without dropout,
# the whole batch packed into one forward pass instead of one example per pass
LEVERS = ("ours+bf16", "ours+eager", "ours+threads=1", "ours+dropout=0", "ours+micro=4")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12 examples, 2 runs per recipe (< 3 min)")
    parser.add_argument("--base", default="builtin")
    parser.add_argument("--data", default=str(PARAMED_TRAIN if PARAMED_TRAIN.is_file() else SAMPLE))
    parser.add_argument("--n", type=int, default=48, help="examples per run")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="runs per recipe")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="which recipes to run")
    parser.add_argument("--levers", action="store_true", help="also each CPU speed lever on top of ours")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeats = 12, 2
    if args.worker:  # one process per recipe, so its peak RSS is its own
        results = [
            train_once(args.worker, args.base, args.data, args.n, args.batch_size)
            for _ in range(args.repeats)
        ]
        Path(args.out).write_text(json.dumps(results))
        return
    compare(args)


def compare(args) -> None:
    runs = {}
    recipes = [name for name in args.recipes.split(",") if name in RECIPES + LEVERS]
    if args.levers:
        recipes += [lever for lever in LEVERS if lever not in recipes]
    with tempfile.TemporaryDirectory() as scratch:
        for recipe in recipes:
            out = Path(scratch) / f"{recipe}.json"
            command = [sys.executable, __file__, "--worker", recipe, "--out", str(out), "--base", args.base]
            command += ["--data", args.data, "--n", str(args.n), "--batch-size", str(args.batch_size)]
            subprocess.run([*command, "--repeats", str(args.repeats)], check=True, cwd=ROOT)
            runs[recipe] = json.loads(out.read_text())
    first = runs["ours"][0]
    print(
        f"model {first['model']} on {first['device']} ({first['dtype']}); data {Path(args.data).name}: "
        f"{args.n} examples, {first['tokens']} tokens ({first['target_tokens']} targets), "
        f"batch size {args.batch_size}, {args.repeats} runs per recipe"
    )
    summary = {}
    for recipe in recipes:
        results = runs[recipe]
        numeric = [key for key, value in results[0].items() if isinstance(value, int | float)]
        summary[recipe] = {key: statistics.median(r[key] for r in results) for key in numeric}
        row = summary[recipe]
        memory = f", peak CUDA {row['peak_cuda_mb']:.0f} MB" if row.get("peak_cuda_mb") else ""
        print(
            f"{recipe:>8}: {row['tokens_per_second']:.1f} tok/s all, {row['target_tokens_per_second']:.1f} "
            f"target tok/s, peak RSS {row['peak_rss_mb']:.0f} MB{memory}, mean loss {row['train_loss']:.4f}, "
            f"final loss {row['final_loss']:.4f}  [{results[0]['recipe']}; runs: "
            f"{[round(r['tokens_per_second'], 1) for r in results]} tok/s]"
        )
    for recipe in recipes:
        if summary[recipe].get("estimated_peak_mb"):
            row = summary[recipe]
            # on a GPU the estimate is of the GPU's memory (what torch allocated), else of the process
            measured, kind = (
                (row["peak_cuda_mb"], "GPU") if row.get("peak_cuda_mb") else (row["peak_rss_mb"], "RSS")
            )
            print(
                f"{recipe}: estimated peak {row['estimated_peak_mb']:.0f} MB, measured "
                f"{measured:.0f} MB ({row['estimated_peak_mb'] / measured - 1:+.0%}, {kind})"
            )
    if "ours-checkpointing" in summary:
        ours, low = summary["ours"], summary["ours-checkpointing"]
        print(
            f"checkpointing on: peak RSS {low['peak_rss_mb']:.0f} vs {ours['peak_rss_mb']:.0f} MB as chosen, "
            f"at {low['tokens_per_second'] / ours['tokens_per_second']:.2f}x its tokens/s"
        )
    if "tutorial" not in summary:
        return
    ours, tutorial = summary["ours"], summary["tutorial"]
    loss_change = ours["train_loss"] / tutorial["train_loss"] - 1
    print(f"mean training loss: ours {loss_change:+.1%} vs the tutorial recipe")
    ratio = ours["tokens_per_second"] / tutorial["tokens_per_second"]
    print(f"our trainer runs at {ratio:.2f}x the tutorial recipe's tokens/s on the same examples")


def train_once(recipe_spec: str, base: str, data: str, n: int, batch_size: int) -> dict:
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    recipe_name, *named_levers = recipe_spec.split("+")
    levers = dict(item.partition("=")[::2] for item in named_levers)
    if "threads" in levers:
        torch.set_num_threads(int(levers["threads"]))
    dropout = float(levers.get("dropout", 0.1))
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from engine import catalogue, loading, models
    from engine.roles import TRANSLATOR
    from training.config import LORA_TARGETS
    from training.data import batching
    from training.data.datasets import load_dataset
    from training.data.examples import tokenize_dataset
    from training.parallel import memory
    from training.trainer.fit import lora_targets

    spec = catalogue.parse_model_id(base)
    model_dir = models.resolve_model_dir(spec)
    tokenizer = loading.load_tokenizer(model_dir, spec)
    prompt_format = loading.default_prompt_format(spec, model_dir, tokenizer)
    tokenized = tokenize_dataset(load_dataset(data, limit=n), tokenizer, prompt_format, TRANSLATOR, 384)
    device = loading.choose_device()
    dtype = loading.choose_dtype(device)
    free = memory.free_memory(device)  # before the weights, as the trainer measures it
    torch.manual_seed(0)
    model = loading.load_model(model_dir, spec, device=device, dtype=dtype)
    if "eager" in levers:
        model.set_attn_implementation("eager")
    micro_batch, accumulation = batch_size, 1
    targets = lora_targets(model, LORA_TARGETS)
    estimated = None
    if recipe_name == "tutorial":
        recipe = batching.TUTORIAL
    else:
        packing = batching.choose_packing("auto", loading.model_type(model_dir), trust_remote_code=False)
        workload = memory.Workload(
            dtype_bytes=torch.empty((), dtype=dtype).element_size(),
            micro_batch=1,
            longest=memory.longest_of(tokenized)[0],
            most_targets=memory.longest_of(tokenized)[1],
            lora_r=8,
            lora_targets=tuple(targets),
            lora_dropout=dropout,
            checkpointing=False,
            on_gpu=device.startswith("cuda"),
        )
        fitted = memory.choose(
            memory.shape_of(model_dir),
            workload,
            device=device,
            examples_per_step=batch_size,
            batch_size=batch_size,
            free=free,
            checkpointing="on" if recipe_name == "ours-checkpointing" else "auto",
            micro_batch=int(levers.get("micro", 0)),
        )
        recipe = batching.choose_recipe(packing, fitted.checkpointing)
        micro_batch, accumulation = fitted.micro_batch, fitted.accumulation
        estimated = fitted.estimate.total / 2**20
    batching.prepare_model(model, recipe)
    target_logits_only = recipe_name != "tutorial" and batching.keeps_target_logits_only(model)
    lora = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=32, lora_dropout=dropout, target_modules=targets)
    model = get_peft_model(model, lora)
    with tempfile.TemporaryDirectory() as output:
        arguments = TrainingArguments(
            output_dir=output,
            num_train_epochs=1,
            per_device_train_batch_size=micro_batch,
            gradient_accumulation_steps=accumulation,
            learning_rate=1e-4,
            logging_steps=1,
            save_strategy="no",
            bf16=dtype == torch.bfloat16 or "bf16" in levers,  # fp32 weights: autocast
            fp16=dtype == torch.float16,
            use_cpu=device == "cpu",
            seed=0,
            report_to="none",
            remove_unused_columns=False,
            disable_tqdm=True,
            train_sampling_strategy=batching.sampling_strategy(recipe),
        )
        features = [{"input_ids": e.input_ids, "labels": e.labels} for e in tokenized.examples]
        collator = batching.collator(tokenizer, recipe)
        if target_logits_only:
            collator = batching.TargetLogitsOnly(collator)
        trainer = Trainer(
            model=model,
            args=arguments,
            train_dataset=features,
            data_collator=collator,
            compute_loss_func=batching.target_loss if target_logits_only else None,
        )
        trainer.remove_callback(PrinterCallback)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "recipe": recipe.describe() + "".join(f"; {name} {value}".rstrip() for name, value in levers.items()),
        "model": spec.model_id,
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "tokens": tokenized.num_tokens,
        "target_tokens": tokenized.num_target_tokens,
        "seconds": seconds,
        "tokens_per_second": tokenized.num_tokens / seconds,
        "target_tokens_per_second": tokenized.num_target_tokens / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "estimated_peak_mb": estimated or 0.0,
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0,
        "train_loss": result.training_loss,
        "final_loss": losses[-1],
    }


if __name__ == "__main__":
    main()
