"""How examples become batches, and what the trainer spends compute on.

The tutorials pad every batch to its longest example (`DataCollatorForSeq2Seq(padding=True)`) and
always recompute activations (gradient checkpointing). Ours, without changing the math:
- padding-free packing: a batch is one row of its examples back to back, with position ids
  restarting per example; transformers' own models then mask attention per example, so every
  example's logits and loss are what they would be alone (tests/test_batching.py). No pad token
  is ever computed. Only where that is exact: transformers' built-in architectures, never Yuan
  (its filtering convolution crosses example boundaries) nor a checkpoint's own remote code.
- where packing is not exact: padded batches of similar length (length-grouped sampling).
- gradient checkpointing only where memory needs it, and micro-batches that fit: the memory
  estimate decides (training/parallel/memory.py), not the device type. On the CPU one example per
  micro-batch: memory then follows the longest example, not four of them, at the same speed (a
  CPU gains nothing from wider matrices), and the gradient is the same since the loss is
  normalised by the step's targets.
- the output layer and its loss only where a target token follows (`TargetLogitsOnly`): the prompt's
  positions never need logits, and over a 49k-token vocabulary those logits, their softmax and
  their gradients are the largest activations of a small model (and a fifth of its forward).
"""

import inspect
from dataclasses import dataclass

from core import texts
from core.errors import UserError
from engine.formats import IGNORE_INDEX
from engine.loading import YUAN_MODEL_TYPE

CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class Recipe:
    packing: bool
    group_by_length: bool
    gradient_checkpointing: bool

    def describe(self) -> str:
        batches = "packed (padding-free)" if self.packing else "padded"
        if self.group_by_length:
            batches += ", length-grouped"
        return f"batches {batches}; gradient checkpointing {'on' if self.gradient_checkpointing else 'off'}"


TUTORIAL = Recipe(packing=False, group_by_length=False, gradient_checkpointing=True)


def check_choice(flag: str, value: str) -> str:
    if value not in CHOICES:
        raise UserError("ERR_SWITCH", flag=flag, value=value)
    return value


def packing_is_exact(model_type: str | None, trust_remote_code: bool) -> bool:
    return model_type is not None and model_type != YUAN_MODEL_TYPE and not trust_remote_code


def choose_packing(choice: str, model_type: str | None, trust_remote_code: bool) -> bool:
    exact = packing_is_exact(model_type, trust_remote_code)
    if choice == "on" and not exact:
        why = texts.WHY_YUAN if model_type == YUAN_MODEL_TYPE else texts.WHY_UNKNOWN
        raise UserError("ERR_PACKING", why=why)
    return exact if choice == "auto" else choice == "on"


def choose_recipe(packing: bool, checkpointing: bool) -> Recipe:
    return Recipe(packing=packing, group_by_length=not packing, gradient_checkpointing=checkpointing)


def collator(tokenizer, recipe: Recipe):
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if recipe.packing:
        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    return DataCollatorForSeq2Seq(tokenizer, padding=True)


def prepare_model(model, recipe: Recipe):
    """Settings the recipe needs on the model before LoRA wraps it."""
    # With a cache, transformers' mask builder ignores packed position ids and lets examples see
    # each other; training never needs the cache anyway.
    model.config.use_cache = False
    if recipe.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return model


def sampling_strategy(recipe: Recipe) -> str:
    return "group_by_length" if recipe.group_by_length else "random"


class TargetLogitsOnly:
    """Wraps a collator so the model computes logits only at positions a target token follows.

    `logits_to_keep` (the positions, shared by the rows of a padded batch) goes to the model's own
    forward; `labels` becomes those positions' next tokens, after one leading ignored column so
    that the Trainer, which counts `labels[:, 1:]`, counts exactly the targets. `target_loss` is
    the matching loss: the same cross-entropy as the model's own, on fewer rows."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, features):
        import torch

        batch = self.collator(features)
        following = batch["labels"][:, 1:]
        positions = (following != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
        ignored = torch.full((following.shape[0], 1), IGNORE_INDEX, dtype=following.dtype)
        batch["logits_to_keep"] = positions
        batch["labels"] = torch.cat([ignored, following[:, positions]], dim=1)
        return batch


def target_loss(outputs, labels, num_items_in_batch=None):
    import torch

    logits = outputs.logits.float()
    targets = labels[:, 1:].to(logits.device)
    total = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    count = num_items_in_batch if num_items_in_batch is not None else targets.ne(IGNORE_INDEX).sum()
    return total / count


def keeps_target_logits_only(model) -> bool:
    """Models whose forward takes `logits_to_keep` as positions (transformers' own, and our Yuan)."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def make_trainer(sharded_on_the_cpu: bool = False, **kwargs):
    """A Trainer whose length grouping spans the examples of a whole optimizer step on every
    process, as transformers' own spans one process's: N processes then train on exactly the
    batches one process would, step for step (tests/test_distributed.py). `sharded_on_the_cpu`:
    FSDP shards CPU processes too (training.parallel.sharding)."""
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from training.parallel import sharding

    base = sharding.on_the_cpu(Trainer) if sharded_on_the_cpu else Trainer

    class GloballyGroupedTrainer(base):
        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if not isinstance(sampler, LengthGroupedSampler):
                return sampler
            step = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
            return LengthGroupedSampler(
                step, dataset=train_dataset or self.train_dataset, model_input_name="input_ids"
            )

    return GloballyGroupedTrainer(**kwargs)
