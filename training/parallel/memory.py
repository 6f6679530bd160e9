"""A training process's peak memory, estimated before it starts, and the choices that follow from it.

The tutorials turn gradient checkpointing on always; our CPU default did too, to keep the built-in
model under 2 GB per process, and paid a third of its tokens/s for it on machines with 16 GB free.
Here memory decides instead of the device type: the estimate of one process's peak is set against
the memory free for it, and checkpointing (and, on a GPU, the micro-batch) follow.

The parts, for one process (bytes):
- runtime: the interpreter with torch, transformers and PEFT, and the tokenizer (measured: 480 MiB,
  plus 8.5 times the tokenizer files' size: Gemma's 33 MB tokenizer.json takes ~280 MiB loaded);
- weights: every parameter at the training dtype (fp32 on a CPU), counted from the weight files;
- trained: the LoRA weights, their gradients and AdamW's two moments, all fp32;
- activations: what the forward keeps for the backward, per token and layer, from the model's
  widths (norms, projections, rotary, attention output, MLP, LoRA dropout copies); with
  checkpointing only each layer's input is kept, and one layer is recomputed at a time;
- backward: the gradients flowing back through the layers and what the allocator keeps of them:
  measured at 0.75 of the whole forward's activations, with checkpointing or without (glibc keeps
  freed blocks; returning them costs 40-80% of the speed on this CPU, see bench/README.md);
- logits: only at target positions (training.data.batching.TargetLogitsOnly), fp32 over the whole
  vocabulary (Gemma's is 262,144 wide).
Tokens are the longest example (after max_length) times the examples per micro-batch. A preference
job runs each pair's two answers through the model, and TRL takes logits at every position.
The 480 MiB, the 8.5 and the 0.75 were fitted to six measured peaks (both built-ins, 192 and 384
tokens, checkpointing on and off: all within 8%); tests/test_memory.py holds the total against
peaks measured afresh at another length.
"""

import json
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path

from core import texts
from core.errors import UserError

# A trainer process before its first step: measured 505 MiB with SmolLM2's 3.5 MB tokenizer.json
# and 760 MiB with Gemma's 33 MB one (the weights are mapped, not yet read).
RUNTIME_BYTES = 480 * 2**20
TOKENIZER_EXPANSION = 8.5
BACKWARD_SHARE = 0.75
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt")
# The estimate is an estimate: a process is let use this share of the free memory, the rest is
# left for the allocator's fragmentation and whatever else the machine runs meanwhile.
FITS_SHARE = 0.85
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
_SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1}
_SAFETENSORS_BYTES.update({"BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1})
VERDICTS = ("fits", "tight", "too_big")


@dataclass(frozen=True)
class Shape:
    """What the estimate needs to know about a model, read from its folder."""

    model_type: str
    parameters: int
    hidden: int
    intermediate: int
    layers: int
    query_width: int  # attention heads x head width (Gemma's is wider than its hidden size)
    key_value_width: int
    vocab: int
    norms_per_layer: int = 2  # Gemma 3 has four, and a norm on each query and key
    tokenizer_bytes: int = 0


def shape_of(model_dir: Path) -> Shape:
    """The model's widths from config.json and its parameter count from the weight files' headers."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError("ERR_MEMORY_SHAPE", path=model_dir, error=error) from error
    config = config.get("text_config", config)
    hidden = int(config["hidden_size"])
    heads = int(config.get("num_attention_heads", 1))
    head_width = int(config.get("head_dim") or hidden // heads)
    kv_heads = int(config.get("num_key_value_heads") or heads)
    model_type = config.get("model_type", "")
    return Shape(
        model_type=model_type,
        parameters=parameter_count(Path(model_dir)) or _parameters_from_config(config),
        hidden=hidden,
        intermediate=int(config.get("intermediate_size") or 4 * hidden),
        layers=int(config["num_hidden_layers"]),
        query_width=heads * head_width,
        key_value_width=kv_heads * head_width,
        vocab=int(config["vocab_size"]),
        norms_per_layer=4 if model_type.startswith("gemma") else 2,
        tokenizer_bytes=sum(
            (Path(model_dir) / name).stat().st_size
            for name in TOKENIZER_FILES
            if (Path(model_dir) / name).is_file()
        ),
    )


def parameter_count(model_dir: Path) -> int:
    """Parameters stored in the folder's safetensors files, read from their headers alone (0: none)."""
    total = 0
    for file in sorted(model_dir.glob("*.safetensors")):
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, tensor in header.items():
            if name != "__metadata__":
                count = 1
                for size in tensor["shape"]:
                    count *= size
                total += count
    return total


def _parameters_from_config(config: dict) -> int:
    hidden, layers = int(config["hidden_size"]), int(config["num_hidden_layers"])
    intermediate = int(config.get("intermediate_size") or 4 * hidden)
    embeddings = int(config["vocab_size"]) * hidden
    tied = config.get("tie_word_embeddings", True)
    return embeddings * (1 if tied else 2) + layers * (4 * hidden * hidden + 3 * hidden * intermediate)


@dataclass(frozen=True)
class Workload:
    """What one process trains on, besides the model."""

    dtype_bytes: int
    micro_batch: int
    longest: int  # tokens of the longest example, after max_length
    most_targets: int  # target tokens of the example with the most
    lora_r: int
    lora_targets: tuple[str, ...]
    lora_dropout: float
    checkpointing: bool
    preference: bool = False  # two answers per record (TRL)
    all_logits: bool = False  # logits at every position: TRL's trainers, and remote code we cannot tell
    weight_shards: int = 1  # FSDP: each process holds this share of the weights
    quantize: str = "none"  # QLoRA: the decoder layers' linear weights in 8 or 4 bits
    on_gpu: bool = False  # the estimate is of the GPU's memory (the runtime stays in host RAM)


@dataclass(frozen=True)
class Estimate:
    runtime: int
    weights: int
    trained: int
    activations: int
    backward: int
    logits: int

    @property
    def total(self) -> int:
        return sum(self.parts().values())

    def parts(self) -> dict[str, int]:
        return {
            "runtime": self.runtime,
            "weights": self.weights,
            "trained": self.trained,
            "activations": self.activations,
            "backward": self.backward,
            "logits": self.logits,
        }

    def describe(self) -> str:
        return ", ".join(f"{texts.MEMORY_PARTS[name]} {mib(value)}" for name, value in self.parts().items())


def mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def lora_parameters(shape: Shape, workload: Workload) -> int:
    widths = _linear_widths(shape)
    per_layer = sum(
        workload.lora_r * (inputs + outputs)
        for name, (inputs, outputs) in widths.items()
        if name in workload.lora_targets
    )
    return per_layer * shape.layers


def _linear_widths(shape: Shape) -> dict[str, tuple[int, int]]:
    h, i, q, kv = shape.hidden, shape.intermediate, shape.query_width, shape.key_value_width
    return {
        "q_proj": (h, q),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (q, h),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }


def _layer_floats_per_token(shape: Shape, workload: Workload) -> float:
    """Values one layer keeps for the backward, per token (fp32 masks count a quarter)."""
    h, i, q, kv = shape.hidden, shape.intermediate, shape.query_width, shape.key_value_width
    norms = 2 * h * shape.norms_per_layer  # each norm keeps its input and its output
    if shape.norms_per_layer > 2:
        norms += 2 * (q + kv)  # Gemma's query and key norms
    attention = q + 2 * kv + (q + kv) + 2 * q  # projections, rotary, attention output and its copy
    mlp = 4 * i  # gate, up, the activation, their product
    lora = 0.0
    for name, (inputs, _) in _linear_widths(shape).items():
        if name in workload.lora_targets:
            copy = inputs * 1.25 if workload.lora_dropout > 0 else 0  # dropout's output and its mask
            lora += copy + workload.lora_r
    return norms + attention + mlp + lora


# bytes per quantised weight: NF4 is 4 bits plus one 8-bit absmax per 64 weights and, from double
# quantisation, one fp32 scale per 256 absmax; LLM.int8() is a byte plus per-row scales
QUANTISED_BYTES = {"4bit": 0.5 + 1 / 64 + 4 / (64 * 256), "8bit": 1.0}


def weight_bytes(shape: Shape, workload: Workload) -> int:
    """The weights at the training dtype; quantised (QLoRA), the decoder layers' linear weights in
    their bits and the rest (embeddings, norms) in fp32, as PEFT's k-bit preparation leaves them."""
    if workload.quantize == "none":
        return shape.parameters * workload.dtype_bytes
    attention = shape.hidden * (2 * shape.query_width + 2 * shape.key_value_width)
    linear = shape.layers * (attention + 3 * shape.hidden * shape.intermediate)
    linear = min(linear, shape.parameters)
    return int(linear * QUANTISED_BYTES[workload.quantize]) + (shape.parameters - linear) * 4


def estimate(shape: Shape, workload: Workload) -> Estimate:
    tokens = workload.micro_batch * workload.longest * (2 if workload.preference else 1)
    # activations are kept in the compute dtype: fp32 on a CPU, bf16 on a GPU (QLoRA computes in it too)
    value_bytes = workload.dtype_bytes
    layer = _layer_floats_per_token(shape, workload) * value_bytes * tokens
    if workload.checkpointing:
        # each layer's input is kept; during the backward one layer is recomputed whole
        activations = shape.layers * shape.hidden * value_bytes * tokens + 2 * layer
    else:
        activations = shape.layers * layer + layer
    if workload.all_logits:
        logit_rows = tokens
    else:
        logit_rows = workload.micro_batch * workload.most_targets
    return Estimate(
        runtime=0 if workload.on_gpu else RUNTIME_BYTES + int(TOKENIZER_EXPANSION * shape.tokenizer_bytes),
        weights=weight_bytes(shape, workload) // workload.weight_shards,
        trained=lora_parameters(shape, workload) * 16,  # fp32 weight, gradient, two Adam moments
        activations=int(activations),
        backward=int(BACKWARD_SHARE * shape.layers * layer),
        logits=logit_rows * shape.vocab * 4,
    )


def free_memory(device: str, sharing: int = 1, this_process: bool = True) -> int:
    """Bytes free for one training process on the device: the GPU's free memory, or its share of
    the RAM the kernel says is available without swapping (MemAvailable; `sharing` processes of
    this machine divide it), plus what this process already holds when it is the trainer (its
    runtime is part of the estimate)."""
    if device.startswith("cuda"):
        import torch

        index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        return torch.cuda.mem_get_info(index)[0]
    return _available_ram() // max(sharing, 1) + (_own_rss() if this_process else 0)


def _proc_bytes(path: str, field: str) -> int | None:
    """A "Field:  N kB" line of a /proc file, in bytes (None where the file or line is missing)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _available_ram() -> int:
    available = _proc_bytes("/proc/meminfo", "MemAvailable")
    return available if available is not None else os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _own_rss() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def own_peak_rss() -> int:
    """This process's peak resident memory in bytes: VmHWM, which belongs to the process's own
    memory since its exec. getrusage's ru_maxrss is not: Linux carries it across fork and exec, so
    a trainer started by a large process (the Streamlit app, pytest) would report its parent's."""
    import resource

    peak = _proc_bytes("/proc/self/status", "VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def describe_process() -> str:
    """This process's resident memory now and at its peak so far (what the log shows)."""
    return f"resident {mib(_own_rss())}, peak so far {mib(own_peak_rss())}"


@dataclass(frozen=True)
class MemoryDecision:
    """What the trainer does with the estimate: checkpointing and the micro-batch, and why."""

    checkpointing: bool
    micro_batch: int
    accumulation: int
    estimate: Estimate
    free: int  # bytes free for this process
    verdict: str  # one of VERDICTS
    reason: str

    def as_metrics(self) -> dict:
        return {
            "estimated_peak_mb": self.estimate.total / 2**20,
            "free_mb": self.free / 2**20,
            "memory_verdict": self.verdict,
            "memory_choice": self.reason,
        }


def verdict(total: int, free: int) -> str:
    if total <= FITS_SHARE * free:
        return "fits"
    return "tight" if total <= free else "too_big"


def choose(
    shape: Shape,
    workload: Workload,
    *,
    device: str,
    examples_per_step: int,
    batch_size: int,
    free: int,
    checkpointing: str = "auto",
    micro_batch: int = 0,
) -> MemoryDecision:
    """Checkpointing and the micro-batch for one process.

    `checkpointing` is the user's switch (auto, on, off) and `micro_batch` theirs (0: automatic).
    Automatic: on a CPU one example per micro-batch (a CPU gains nothing from wider matrices, and
    memory then follows the longest example); on a GPU the largest divisor of the batch size that
    fits. Checkpointing stays off wherever some micro-batch fits without it: it costs a third of the
    tokens/s; a smaller micro-batch with more accumulation gives the same examples per step."""
    if micro_batch:
        candidates = [micro_batch]
    elif device == "cpu":
        candidates = [1]
    else:
        candidates = [size for size in range(batch_size, 0, -1) if examples_per_step % size == 0]
    switches = {"on": [True], "off": [False], "auto": [False, True]}[checkpointing]
    tried = []
    for switch in switches:
        for size in candidates:
            trial = estimate(shape, replace(workload, micro_batch=size, checkpointing=switch))
            tried.append((switch, size, trial))
            if verdict(trial.total, free) == "fits":
                return _choice(switch, size, trial, free, examples_per_step, checkpointing, micro_batch)
    # nothing fits: the least memory of what was allowed, and say so
    switch, size, trial = min(tried, key=lambda t: t[2].total)
    return _choice(switch, size, trial, free, examples_per_step, checkpointing, micro_batch)


def _choice(switch, size, trial, free, examples_per_step, checkpointing, micro_batch) -> MemoryDecision:
    found = verdict(trial.total, free)
    if checkpointing != "auto":
        why = texts.MEMORY_CHECKPOINTING_SET.format(switch=texts.SWITCH_NAMES[checkpointing])
    elif switch:
        why = texts.MEMORY_CHECKPOINTING_NEEDED
    else:
        why = texts.MEMORY_CHECKPOINTING_NOT_NEEDED
    reason = texts.MEMORY_REASON.format(
        total=mib(trial.total),
        free=mib(free),
        verdict=texts.MEMORY_VERDICTS[found],
        checkpointing=texts.SWITCH_NAMES["on" if switch else "off"],
        why=why,
        micro=size,
        accumulation=examples_per_step // size,
    )
    if found == "too_big":
        reason += " " + texts.MEMORY_TOO_BIG_ADVICE
    return MemoryDecision(switch, size, examples_per_step // size, trial, free, found, reason)


def longest_of(tokenized) -> tuple[int, int]:
    """(tokens of the longest example, target tokens of the example with the most), as trained."""
    longest = most = 0
    for example in tokenized.examples:
        if hasattr(example, "labels"):
            longest = max(longest, len(example.input_ids))
            most = max(most, sum(1 for label in example.labels if label != -100))
        else:
            answer = max(len(example.chosen_ids), len(example.rejected_ids))
            longest = max(longest, len(example.prompt_ids) + answer)
            most = max(most, answer)
    return longest, most


def choose_for_config(
    config, model_dir: Path, longest: int, most_targets: int, device: str, dtype_bytes: int, free: int
) -> MemoryDecision:
    """The choice for a checked config (training.config.TrainConfig) and its longest example."""
    workload = Workload(
        dtype_bytes=dtype_bytes,
        micro_batch=1,
        longest=longest,
        most_targets=most_targets,
        lora_r=config.lora_r,
        lora_targets=tuple(name.strip() for name in config.target_modules.split(",") if name.strip()),
        lora_dropout=config.lora_dropout,
        checkpointing=False,
        preference=config.prefers,
        all_logits=config.prefers or config.trust_remote_code,
        quantize=config.quantize,
        weight_shards=max(config.processes, 1) if config.strategy in ("fsdp", "zero3") else 1,
        on_gpu=device.startswith("cuda"),
    )
    return choose(
        shape_of(model_dir),
        workload,
        device=device,
        examples_per_step=config.batch_size * config.grad_accum,
        batch_size=config.batch_size,
        free=free,
        checkpointing=config.gradient_checkpointing,
        micro_batch=config.micro_batch,
    )


def choose_for(config, plan, device: str, dtype, world) -> MemoryDecision:
    """The trainer's choice for a claimed job's plan, with what is free for each of this machine's
    processes now."""
    import torch

    free = free_memory(device, sharing=world.local_size if device == "cpu" else 1)
    dtype_bytes = torch.empty((), dtype=dtype).element_size()
    return choose_for_config(config, plan.model_dir, *longest_of(plan.tokenized), device, dtype_bytes, free)


def for_form(
    model_dir: Path, longest: int, most_targets: int, form: dict, device: str, dtype_bytes: int
) -> MemoryDecision:
    """What the trainer would choose for the training page's form, with what is free now (the
    trainer looks again when it starts). The form's settings are checked as a start checks them."""
    from training.config import SETTINGS, check_settings

    config = check_settings(
        {key: value for key, value in form.items() if key in SETTINGS and value is not None}
    )
    free = free_memory(device, sharing=config.processes if device == "cpu" else 1, this_process=False)
    return choose_for_config(config, model_dir, longest, most_targets, device, dtype_bytes, free)


class OutOfMemory(Exception):
    """Training ran out of memory. The message names the setting to change; `changes` are the
    settings a resume from the last checkpoint should run with (empty when no resume would fit)."""

    def __init__(self, message: str, changes: dict):
        super().__init__(message)
        self.changes = changes


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or the CPU allocator's refusal (a RuntimeError
    that says "can't allocate memory")."""
    import torch

    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def out_of_memory(config, micro_batch: int, checkpointing: bool, device: str) -> OutOfMemory:
    """What to do after running out of memory with `micro_batch` examples per forward pass: half as
    many (or the next smaller divisor), which keeps the examples per step and so the run itself; at
    one example, gradient checkpointing; beyond that, nothing a resume could change."""
    per_step = config.batch_size * config.grad_accum
    smaller = next((size for size in range(micro_batch // 2, 0, -1) if per_step % size == 0), 0)
    resume = "python -m training.train --name {name} --resume {flags}"
    if smaller:
        changes = {"micro_batch": smaller}
        advice = texts.OOM_SMALLER_MICRO_BATCH.format(smaller=smaller, per_step=per_step)
    elif not checkpointing:
        changes = {"gradient_checkpointing": "on"}
        advice = texts.OOM_CHECKPOINTING
    else:
        changes = {}
        advice = texts.OOM_NOTHING_LEFT.format(max_length=config.max_length)
    flags = " ".join(f"--{key.replace('_', '-')} {value}" for key, value in changes.items())
    message = texts.ERR_OUT_OF_MEMORY.format(
        device=device,
        micro=micro_batch,
        checkpointing=texts.SWITCH_NAMES["on" if checkpointing else "off"],
        advice=advice,
    )
    if changes:
        message += " " + texts.OOM_RESUME_COMMAND.format(command=resume.format(name=config.name, flags=flags))
    return OutOfMemory(message, changes)
