"""GRPO: TRL's GRPOTrainer on the studio's own prompts, learning from rewards people can read.

Each training record is a prompt (rendered by engine.formats exactly as chat sends it, so the
model is rewarded for the answers it gives in chat) and a reference (the record's output). For each
prompt the model samples `generations` completions; training.evaluation.rewards scores each, the
weighted sum's advantage within its group is what the policy learns from, and a KL term
(`kl`) keeps it near where it started (the adapter it continues: TRL keeps a frozen copy of it as
a second adapter on the same base weights).

Sampling is seeded by the job's seed, the step and the prompt, one prompt's group at a time, so the
completions do not depend on how prompts are spread over processes or batched: one process and two
(torchrun) sample the same completions and log the same losses, and a resumed job samples what the
uninterrupted one would have.
"""

import hashlib
import logging
import math
import os

from engine import formats
from training.config import TrainConfig
from training.evaluation import rewards

log = logging.getLogger("translator.train")
SAMPLES_KEPT = 4  # completions of the latest step shown on the job's panel
LOGGED_PREFIXES = ("rewards/", "completions/mean_length", "completions/clipped_ratio")
LOGGED = ("reward", "reward_std", "kl", "entropy")


def prompt_rows(plan, records: list[dict]) -> tuple[list[dict], dict[str, list[int]]]:
    """The dataset TRL reads (`prompt` a key, `reference`, `source`) and each key's token ids; a
    record whose prompt fills max_length is left out, as the supervised examples leave it out."""
    config, tokenizer = plan.config, plan.tokenizer
    rows, ids_of = [], {}
    for record in records:
        role = plan.role
        if record.get("system") is not None:
            from dataclasses import replace

            role = replace(role, system_prompt=record["system"])
        history = [tuple(turn) for turn in record.get("history") or ()]
        text = formats.user_text(role, record.get("instruction", ""), record.get("input", ""))
        ids = formats.prompt_ids(tokenizer, config.prompt_format, role, text, history)
        if len(ids) >= config.max_length:
            continue
        key = formats.prompt_text(tokenizer, config.prompt_format, role, text, history)
        ids_of[key] = ids
        rows.append({"prompt": key, "reference": record["output"], "source": text})
    return rows, ids_of


def completion_length(config: TrainConfig, tokenizer, rows: list[dict]) -> int:
    """The setting, or 1.5 x the longest reference in tokens (at least 8), within max_length."""
    if config.completion_length:
        return min(config.completion_length, config.max_length)
    longest = max(len(tokenizer(row["reference"], add_special_tokens=False)["input_ids"]) for row in rows)
    return min(max(8, math.ceil(1.5 * longest) + 1), config.max_length)


def micro_batches(config: TrainConfig, world_size: int) -> tuple[int, int]:
    """One prompt's group of completions per micro-batch; the step's prompts (batch-size x
    grad-accum) shared among the processes."""
    prompts = config.batch_size * config.grad_accum
    return config.generations, max(prompts // max(world_size, 1), 1)


def make_trainer(model, arguments: dict, plan, records: list[dict], callbacks: list):
    """TRL's GRPOTrainer over the plan's prompts, its rewards weighed as the job asks."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import datasets
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    config, tokenizer = plan.config, plan.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows, ids_of = prompt_rows(plan, records)
    stops = formats.stop_token_ids(tokenizer, config.prompt_format, model)
    model.generation_config.eos_token_id = list(stops)  # TRL ends and masks completions at these
    context = rewards.Context(
        stop_ids=tuple(stops),
        control_texts=tuple(control_texts(tokenizer)),
        length_range=rewards.parse_range(config.length_range),
        judge=rewards.judge_for(config),
    )
    functions, weighed = rewards.for_trl(rewards.weights_for(config, plan.role), context)
    longest = completion_length(config, tokenizer, rows)
    log.info(
        "GRPO: %d prompts, %d completions each of at most %d tokens at temperature %g; rewards %s; "
        "KL weight %g",
        len(rows),
        config.generations,
        longest,
        config.sampling_temperature,
        rewards.describe(dict(zip([f.__name__ for f in functions], weighed, strict=True))),
        config.kl,
    )
    args = GRPOConfig(
        **arguments,
        num_generations=config.generations,
        max_completion_length=longest,
        temperature=config.sampling_temperature,
        beta=config.kl,
        reward_weights=weighed,
        log_completions=False,
        shuffle_dataset=True,
    )
    trainer_class = _seeded(GRPOTrainer, ids_of, config.seed)
    return trainer_class(
        model=model,
        reward_funcs=functions,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def control_texts(tokenizer) -> list[str]:
    """The tokenizer's special tokens as text, and Yuan's markers: text that must not show in an answer."""
    special = [t for t in getattr(tokenizer, "all_special_tokens", []) if t and len(t) > 1]
    return sorted({*special, "<sep>", "<eod>"})


def _seeded(trainer_class, ids_of: dict[str, list[int]], seed: int):
    import torch

    class Seeded(trainer_class):
        """GRPO with the studio's prompt ids, sampling seeded per (seed, step, prompt), and the
        latest step's completions kept for the job's panel."""

        def _tokenize_prompts(self, prompts: list):
            return [ids_of[prompt] for prompt in prompts], None, {}

        def _generate_single_turn(
            self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
        ):
            from trl.models import unwrap_model_for_generation

            completions = []
            start = 0
            while start < len(prompt_ids):
                end = start
                while end < len(prompt_ids) and prompt_ids[end] == prompt_ids[start]:
                    end += 1
                group = prompt_ids[start:end]
                with (
                    torch.random.fork_rng(devices=[]),
                    unwrap_model_for_generation(
                        self.model_wrapped,
                        self.accelerator,
                        generation_kwargs=self.generation_kwargs,
                        gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
                    ) as unwrapped,
                    torch.no_grad(),
                ):
                    torch.manual_seed(_seed_of(seed, self.state.global_step, group[0]))
                    ids = torch.tensor(group, device=self.accelerator.device)
                    output = unwrapped.generate(
                        input_ids=ids,
                        attention_mask=torch.ones_like(ids),
                        generation_config=self.generation_config,
                    )
                for row in output[:, ids.shape[1] :].tolist():
                    ends = [at for at, token in enumerate(row) if token in self.eos_token_ids]
                    completions.append(row[: ends[0] + 1] if ends else row)
                start = end
            return completions, None

        def log(self, logs: dict, start_time: float | None = None) -> None:
            self.latest_samples = _samples(self._logs)
            super().log(logs, start_time)

    Seeded.__name__ = trainer_class.__name__
    return Seeded


def _seed_of(seed: int, step: int, prompt: list[int]) -> int:
    digest = hashlib.sha256(f"{seed}:{step}:{','.join(map(str, prompt))}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**63)


def _samples(logged: dict) -> list[dict]:
    """The last group's completions with their rewards, as TRL logged them."""
    prompts, completions = list(logged["prompt"]), list(logged["completion"])
    if not completions:
        return []
    kept = range(max(0, len(completions) - SAMPLES_KEPT), len(completions))
    by_reward = {name: list(values) for name, values in logged["rewards"].items()}
    advantages = list(logged["advantages"])
    return [
        {
            "prompt": _text(prompts[index])[-300:],
            "completion": _text(completions[index])[:500],
            "rewards": {
                name: _finite(values[index]) for name, values in by_reward.items() if index < len(values)
            },
            "advantage": _finite(advantages[index]) if index < len(advantages) else None,
        }
        for index in kept
    ]


def _text(value) -> str:
    return value if isinstance(value, str) else " ".join(m.get("content", "") for m in value)


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def logged(logs: dict) -> dict:
    """What a GRPO job logs besides the loss: each reward's mean, the total, the KL, the length."""
    kept = {}
    for key, value in logs.items():
        if (key in LOGGED or key.startswith(LOGGED_PREFIXES)) and isinstance(value, int | float):
            if math.isfinite(value):
                kept[key] = float(value)
    return kept
