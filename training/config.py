"""The trainer's settings: one dataclass and one schema, read from defaults, a JSON file, then flags.

Defaults are the tutorials': LoRA r=8, alpha 32, dropout 0.1 on q/k/v/o/gate/up/down, max length
384; learning rate and epochs follow the model's size (training/defaults.py: the tutorials' lr 1e-4
and 3 epochs from a billion parameters up, measured ones below). Every setting carries its
accepted range or choices here, and `check_settings` is the one place they are enforced: flags, a
`--config` file and the training page's form all go through it before any job row or folder exists.
"""

import argparse
import json
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from core import texts
from core.errors import UserError
from core.texts import Message
from engine.formats import FORMATS as PROMPT_FORMATS

LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
SWITCHES = ("auto", "on", "off")
QUANTIZE_CHOICES = ("none", "8bit", "4bit")  # QLoRA through bitsandbytes (engine.loading)
# sft: instruction data (input -> output); dpo, orpo, kto learn from preferences (training/data/pairs.py);
# grpo from rewards of its own sampled completions (training/evaluation/rewards.py)
METHODS = ("sft", "dpo", "orpo", "kto", "grpo")
PREFERENCE_METHODS = ("dpo", "orpo", "kto")
# TRL's loss variants that train on one pair per micro-batch (those that sort a batch or need label
# smoothing are left out); KTO's two losses
DPO_LOSSES = (
    "sigmoid", "ipo", "hinge", "robust", "bco_pair", "sppo_hard", "nca_pair",
    "apo_zero", "apo_down", "sigmoid_norm", "discopop",
)  # fmt: skip
KTO_LOSSES = ("kto", "apo_zero_unpaired")
LOSSES = {"dpo": DPO_LOSSES, "kto": KTO_LOSSES, "orpo": (), "sft": (), "grpo": ()}
SLURM_NAME = r"[A-Za-z0-9_.-]*"


@dataclass(frozen=True)
class Rule:
    """What a setting accepts: a closed or half-open interval, or a list of choices."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the lower bound itself is not accepted (learning rate 0)
    high_open: bool = False
    choices: tuple = ()
    also: tuple = ()  # extra accepted values outside the interval (max steps -1)
    also_means_by_size: bool = False  # the extra value asks for the model size's default
    pattern: str = ""

    def describe(self) -> str:
        if self.choices:
            choices = ", ".join(repr(c) if c else texts.RULE_AUTOMATIC for c in self.choices)
            return texts.RULE_ONE_OF.format(choices=choices)
        if self.pattern:
            return texts.RULE_PATTERN.format(pattern=self.pattern)
        bounds = []
        if self.low is not None:
            bounds.append(
                (texts.RULE_ABOVE if self.low_open else texts.RULE_AT_LEAST).format(number=_number(self.low))
            )
        if self.high is not None:
            bounds.append(
                (texts.RULE_BELOW if self.high_open else texts.RULE_AT_MOST).format(number=_number(self.high))
            )
        extra_text = texts.RULE_OR_BY_SIZE if self.also_means_by_size else texts.RULE_OR_ALSO
        extra = "".join(extra_text.format(number=_number(value)) for value in self.also)
        return texts.RULE_AND.join(bounds) + extra

    def accepts(self, value) -> bool:
        if self.choices:
            return value in self.choices
        if self.pattern:
            return re.fullmatch(self.pattern, value) is not None
        if value in self.also:
            return True
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _option(default, help_text: str, rule: Rule | None = None):
    return field(default=default, metadata={"help": help_text, "rule": rule})


@dataclass
class TrainConfig:
    # what to train
    base: str = _option(
        "builtin", "base model: builtin, modelscope:ORG/NAME, hf:ORG/NAME, ORG/NAME or a folder"
    )
    data: str = _option("", "dataset file: .json, .jsonl or .csv with input/output (and instruction)")
    role: str = _option("translator", "role: translator, persona, assistant or a custom role")
    name: str = _option("", "name of the adapter to publish")
    prompt_format: str = _option(
        "", "yuan, chat_template or plain (default: the base model's)", Rule(choices=("", *PROMPT_FORMATS))
    )
    method: str = _option(
        "sft",
        "sft (instruction data), preference tuning on pairs: dpo, orpo, kto, or grpo (rewards of its own "
        "completions, instruction data's outputs as references)",
        Rule(choices=METHODS),
    )
    parent: str = _option(
        "",
        "continue this adapter: its LoRA trains further (for DPO and KTO it is also the reference); "
        "empty: a new LoRA on the base model",
    )
    # preference tuning
    beta: float = _option(
        0.1,
        "DPO and KTO: how far the model may move from its reference (higher: less); ORPO: the weight "
        "of the preference term",
        Rule(low=0, high=100, low_open=True),
    )
    loss_type: str = _option(
        "",
        "DPO: sigmoid, ipo, hinge, robust, bco_pair, sppo_hard, nca_pair, apo_zero, apo_down, "
        "sigmoid_norm, discopop; KTO: kto, apo_zero_unpaired (empty: sigmoid / kto)",
        Rule(choices=("", *DPO_LOSSES, *KTO_LOSSES)),
    )
    max_prompt_length: int = _option(
        0,
        "preference records whose prompt is longer are left out (0: max_length alone)",
        Rule(low=0, high=131072),
    )
    # GRPO: rewards of sampled completions
    rewards: str = _option(
        "",
        "GRPO: rewards and their weights, e.g. chrf=1,english=0.5 (chrf, bleu, english, length for a "
        "translator; language, clean, length_range, ends for any role; judge) ('': a translator's "
        "chrf=1,english=0.5, others' language=1,clean=1,ends=0.5)",
    )
    generations: int = _option(4, "GRPO: completions sampled for each prompt", Rule(low=2, high=64))
    completion_length: int = _option(
        0,
        "GRPO: the longest completion, in tokens (0: 1.5 x the longest reference, within max-length)",
        Rule(low=0, high=131072),
    )
    sampling_temperature: float = _option(
        1.0, "GRPO: temperature of the sampled completions", Rule(low=0, high=2, low_open=True)
    )
    kl: float = _option(
        0.04,
        "GRPO: weight of the KL penalty keeping the model near where it started (0: none, and no "
        "reference kept)",
        Rule(low=0, high=10),
    )
    length_range: str = _option(
        "2:400", "GRPO's length_range reward: characters from:to", Rule(pattern=r"\d+:\d+")
    )
    judge_url: str = _option("", "GRPO's judge reward: an OpenAI-compatible endpoint (http://host:port/v1)")
    judge_model: str = _option("", "GRPO's judge reward: the model the endpoint rates with")
    judge_prompt: str = _option(
        "", "GRPO's judge reward: the judging prompt with {question}, {answer}, {reference} ('': ours)"
    )
    # how much
    epochs: float = _option(
        -1.0,
        "training epochs (-1: by model size, see training/defaults.py)",
        Rule(low=0, high=1000, low_open=True, also=(-1,), also_means_by_size=True),
    )
    max_steps: int = _option(
        -1, "stop after this many optimizer steps (overrides --epochs)", Rule(low=1, high=10**7, also=(-1,))
    )
    limit: int = _option(0, "use only the first N examples (0: all)", Rule(low=0, high=10**9))
    max_length: int = _option(384, "examples are cut to this many tokens", Rule(low=8, high=131072))
    holdout: float = _option(
        0.05, "fraction of examples kept out of training, to evaluate on", Rule(low=0, high=0.5)
    )
    validation_data: str = _option(
        "", "held-out examples from this file instead of a share of --data (--holdout is then 0)"
    )
    skip_evaluation: bool = _option(False, "do not evaluate on the held-out examples after training")
    mlflow_uri: str = _option(
        "",
        "also send parameters, per-step loss and learning rate, checkpoint scores, the held-out "
        "evaluation and the adapter to MLflow: http(s)://server, sqlite:///file.db or a folder (works "
        "offline); empty: TensorBoard event files only",
    )
    lr_sweep: str = _option(
        "",
        "find the learning rate instead of training an adapter: try each of these rates (1e-4,5e-4,1e-3 "
        "or a log-spaced range low:high:count) for --max-steps steps (24 when -1) from the same start, "
        "score each on the held-out examples and name the best",
    )
    # optimisation
    lr: float = _option(
        -1.0,
        "learning rate (-1: by model size, see training/defaults.py)",
        Rule(low=0, high=1, low_open=True, also=(-1,), also_means_by_size=True),
    )
    lr_scale: float = _option(
        1.0,
        "multiplies the learning rate chosen by model size (--lr -1), as OpenAI's learning_rate_multiplier",
        Rule(low=0, high=100, low_open=True),
    )
    batch_size: int = _option(4, "examples per device per step", Rule(low=1, high=4096))
    grad_accum: int = _option(4, "gradient accumulation steps", Rule(low=1, high=4096))
    lora_r: int = _option(8, "LoRA rank", Rule(low=1, high=1024))
    lora_alpha: int = _option(32, "LoRA alpha", Rule(low=1, high=4096))
    lora_dropout: float = _option(0.1, "LoRA dropout", Rule(low=0, high=1, high_open=True))
    target_modules: str = _option(
        LORA_TARGETS,
        "comma-separated modules to adapt (those the model has)",
        Rule(pattern=r"[A-Za-z_][\w.]*(\s*,\s*[A-Za-z_][\w.]*)*"),
    )
    gradient_checkpointing: str = _option(
        "auto",
        "auto (on only where the memory estimate says training would not fit without it), on or off",
        Rule(choices=SWITCHES),
    )
    micro_batch: int = _option(
        0,
        "examples per forward pass; the rest of a step accumulates (0: chosen from the memory "
        "estimate; it must divide batch-size x grad-accum)",
        Rule(low=0, high=4096),
    )
    packing: str = _option(
        "auto",
        "padding-free packed batches: auto (where exact; never Yuan), on or off",
        Rule(choices=SWITCHES),
    )
    seed: int = _option(42, "random seed", Rule(low=0, high=2**32 - 1))
    # where and how
    processes: int = _option(
        1,
        "training processes on this machine, one per GPU (or CPU processes); the app launches them "
        "with torchrun (see training/parallel/launchers.py)",
        Rule(low=1, high=64),
    )
    strategy: str = _option(
        "ddp",
        "ddp (a model copy per process), fsdp (parameters sharded over the processes), "
        "zero2 or zero3 (DeepSpeed, GPU only)",
        Rule(choices=("ddp", "fsdp", "zero2", "zero3")),
    )
    device: str = _option(
        "", "cpu or cuda (default: cuda when available)", Rule(pattern=r"|cpu|cuda(:\d+)?|mps")
    )
    dtype: str = _option(
        "auto",
        "auto (bf16 on capable GPUs, fp32 on CPU), bf16, fp16 or fp32",
        Rule(choices=("auto", "bf16", "fp16", "fp32")),
    )
    quantize: str = _option(
        "none",
        "QLoRA: load the base quantised and train LoRA on top: none, 8bit, or 4bit (NF4 with double "
        "quantisation, computing in the training dtype); needs bitsandbytes. The adapter is used, "
        "merged and exported with the full-precision base",
        Rule(choices=QUANTIZE_CHOICES),
    )
    save_steps: int = _option(
        0, "save a checkpoint every N steps (0: at the end of every epoch)", Rule(low=0, high=10**7)
    )
    # where: this machine (its own fair queue) or a Slurm cluster (sbatch; studio/slurm.py)
    cluster: str = _option("", "where the job runs: '' this machine, or slurm", Rule(choices=("", "slurm")))
    partition: str = _option("", "Slurm partition (default: the cluster's default)", Rule(pattern=SLURM_NAME))
    nodes: int = _option(1, "Slurm: nodes, each running --processes training processes", Rule(low=1, high=64))
    gpus_per_node: int = _option(0, "Slurm: GPUs per node (0: a CPU job)", Rule(low=0, high=16))
    # checked by training.jobs.cluster, with a message in words rather than a pattern
    time_limit: str = _option("", "Slurm time limit: MM, HH:MM:SS, D-HH or D-HH:MM:SS ('' the partition's)")
    slurm_account: str = _option("", "Slurm account to charge ('' your default)", Rule(pattern=SLURM_NAME))
    requeue: bool = _option(
        False, "Slurm: on a time limit or preemption, requeue and resume from the last checkpoint"
    )
    trust_remote_code: bool = _option(False, "run code shipped with the model (only if you trust it)")
    resume: bool = _option(False, "continue the newest interrupted/cancelled job of --name")
    job_id: int = _option(0, "run a job the app already queued in the registry", Rule(low=0, high=2**62))

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def prefers(self) -> bool:
        """Trains on preference data rather than instruction data."""
        return self.method in PREFERENCE_METHODS

    @property
    def rewarded(self) -> bool:
        """Learns from rewards of its own completions (GRPO) rather than from given answers."""
        return self.method == "grpo"

    @property
    def loss(self) -> str:
        """The loss variant, the method's own when none was chosen."""
        return self.loss_type or {"dpo": "sigmoid", "kto": "kto"}.get(self.method, "")


SETTINGS = {option.name: option for option in fields(TrainConfig)}
_TYPES = {"int": int, "float": float, "str": str, "bool": bool, int: int, float: float, str: str, bool: bool}


def rule(name: str) -> Rule | None:
    return SETTINGS[name].metadata["rule"]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_settings(settings: dict, where: str = "") -> TrainConfig:
    """A TrainConfig from `settings` (any subset), every value checked for type and range.

    A value of the wrong type (a number written as text in a JSON file) or outside its range is
    refused with a message naming the setting and what it accepts."""
    prefix = f"{where}: " if where else ""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        known = ", ".join(sorted(name for name, o in SETTINGS.items() if o.default is not MISSING))
        raise UserError("ERR_UNKNOWN_SETTINGS", prefix=prefix, unknown=", ".join(unknown), known=known)
    values = {}
    for name, value in settings.items():
        kind = _TYPES[SETTINGS[name].type]
        values[name] = _typed(name, value, kind, prefix)
        setting_rule = rule(name)
        if setting_rule is not None and not setting_rule.accepts(values[name]):
            raise UserError(
                "ERR_SETTING_RANGE",
                prefix=prefix,
                flag=flag(name),
                rule=setting_rule.describe(),
                value=value,
                hint=_hint(name),
            )
    config = TrainConfig(**values)
    per_step = config.batch_size * config.grad_accum
    if config.micro_batch and per_step % config.micro_batch:
        raise UserError("ERR_MICRO_BATCH", prefix=prefix, micro=config.micro_batch, per_step=per_step)
    return config


def _typed(name: str, value, kind: type, prefix: str):
    if kind is bool or kind is str:
        ok = isinstance(value, kind)
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and kind is int:
            ok = float(value).is_integer()  # 4.0 from a form or a JSON file is the whole number 4
        if ok:
            value = kind(value)
    if not ok:
        raise UserError(
            "ERR_SETTING_TYPE",
            prefix=prefix,
            flag=flag(name),
            kind=Message(f"KIND_NAMES.{kind.__name__}"),
            value=value,
            type=type(value).__name__,
        )
    return value


def _hint(name: str) -> "Message | str":
    if name == "epochs":
        return Message("HINT_EPOCHS")
    if name == "max_length":
        return Message("HINT_MAX_LENGTH")
    return ""


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    return check_settings(parse_settings(argv))


def parse_settings(argv: list[str] | None = None) -> dict:
    """The settings a command line gives (flags over its --config file), not yet range-checked:
    `training.jobs.lifecycle.check_request` checks them once, with everything else about the request."""
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train a LoRA adapter and publish it to the registry.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="JSON file with any of the settings below")
    for option in fields(TrainConfig):
        kind = _TYPES[option.type]
        if kind is bool:
            parser.add_argument(flag(option.name), action="store_true", help=option.metadata["help"])
        else:
            parser.add_argument(
                flag(option.name), type=_flag_value(option.name, kind), help=_flag_help(option)
            )
    given = vars(parser.parse_args(argv))
    settings = read_config_file(Path(given.pop("config"))) if "config" in given else {}
    settings.update(given)
    return settings


def _flag_help(option) -> str:
    setting_rule = option.metadata["rule"]
    accepted = f"; {setting_rule.describe()}" if setting_rule is not None else ""
    return f"{option.metadata['help']} (default: {option.default!r}{accepted})"


def _flag_value(name: str, kind: type):
    """argparse would print its own usage error; ours names the flag and what it accepts."""

    def convert(text: str):
        if kind is str:
            return text
        try:
            number = float(text)
        except ValueError:
            number = None
        if number is None or (kind is int and not number.is_integer()):
            raise UserError(
                "ERR_FLAG_VALUE", flag=flag(name), kind=Message(f"KIND_NAMES.{kind.__name__}"), text=text
            )
        return int(number) if kind is int else number

    return convert


def read_config_file(path: Path) -> dict:
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("ERR_CONFIG_MISSING", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError("ERR_CONFIG_JSON", path=path, error=error) from None
    if not isinstance(settings, dict):
        raise UserError("ERR_CONFIG_OBJECT", path=path)
    check_settings(settings, str(path))
    return settings
