"""How examples become batches, and what the trainer spends compute on.

The tutorials pad every batch to its longest example (`DataCollatorForSeq2Seq(padding=True)`) and
always recompute activations (gradient checkpointing). Ours, without changing the math:
- padding-free packing: a batch is one row of its examples back to back, with position ids
  restarting per example; transformers' own models then mask attention per example, so every
  example's logits and loss are what they would be alone (tests/test_batching.py). No pad token
  is ever computed. Only where that is exact: transformers' built-in architectures, never Yuan
  (its filtering convolution crosses example boundaries) nor a checkpoint's own remote code.
- where packing is not exact: padded batches of similar length (length-grouped sampling).
- gradient checkpointing only when memory needs it: GPU and a model above 1B parameters.
"""

from dataclasses import dataclass

from engine import texts
from engine.formats import IGNORE_INDEX
from engine.models import YUAN_MODEL_TYPE
from registry.errors import UserError

CHOICES = ("auto", "on", "off")
LARGE_MODEL_PARAMETERS = 1_000_000_000


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
        raise UserError(texts.ERR_SWITCH.format(flag=flag, value=value))
    return value


def packing_is_exact(model_type: str | None, trust_remote_code: bool) -> bool:
    return model_type is not None and model_type != YUAN_MODEL_TYPE and not trust_remote_code


def choose_packing(choice: str, model_type: str | None, trust_remote_code: bool) -> bool:
    exact = packing_is_exact(model_type, trust_remote_code)
    if choice == "on" and not exact:
        why = texts.WHY_YUAN if model_type == YUAN_MODEL_TYPE else texts.WHY_UNKNOWN
        raise UserError(texts.ERR_PACKING.format(why=why))
    return exact if choice == "auto" else choice == "on"


def choose_checkpointing(choice: str, device: str, num_parameters: int) -> bool:
    if choice != "auto":
        return choice == "on"
    return device.startswith("cuda") and num_parameters > LARGE_MODEL_PARAMETERS


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
