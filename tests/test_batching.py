"""Packed (padding-free) batches change nothing but speed: same per-example loss, same training."""

import json

import pytest
import torch

from core.errors import UserError
from core.home import PROJECT_ROOT
from engine import formats
from engine.roles import TRANSLATOR
from training.data import batching

SAMPLE = PROJECT_ROOT / "data" / "translator_sample.jsonl"


def _features(tokenizer, count: int) -> list[dict]:
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()[:count]]
    examples = [formats.training_example(tokenizer, "plain", TRANSLATOR, record) for record in records]
    assert len({len(e.input_ids) for e in examples}) > 1  # lengths differ, so padding happens
    return [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]


def _per_example_losses(logits: torch.Tensor, labels: torch.Tensor, example_of_token: torch.Tensor):
    logits, labels, owner = logits[:, :-1], labels[:, 1:], example_of_token[:, 1:]
    token_losses = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none"
    )
    owner, counted = owner.reshape(-1), labels.reshape(-1) != formats.IGNORE_INDEX
    return [token_losses[counted & (owner == index)].mean().item() for index in range(int(owner.max()) + 1)]


def _model(model_dir, recipe):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return batching.prepare_model(AutoModelForCausalLM.from_pretrained(model_dir), recipe)


def test_packed_and_padded_batches_give_the_same_per_example_loss(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    features = _features(tokenizer, 4)
    packed_recipe = batching.Recipe(packing=True, group_by_length=False, gradient_checkpointing=False)
    padded_recipe = batching.Recipe(packing=False, group_by_length=False, gradient_checkpointing=False)
    model = _model(tiny_model_dir, packed_recipe).eval()

    packed = batching.collator(tokenizer, packed_recipe)(features)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed  # one row, no padding
    owner = torch.cat([torch.full((len(f["input_ids"]),), i) for i, f in enumerate(features)])[None]
    with torch.no_grad():
        packed_logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits
    packed_losses = _per_example_losses(packed_logits, packed["labels"], owner)

    padded = batching.collator(tokenizer, padded_recipe)(features)
    assert padded["input_ids"].shape[0] == len(features)
    row = torch.arange(len(features))[:, None].expand_as(padded["input_ids"])
    with torch.no_grad():
        padded_logits = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
    padded_losses = _per_example_losses(padded_logits, padded["labels"], row)

    assert packed_losses == pytest.approx(padded_losses, abs=1e-5)
    # and the packed row really holds all the examples: no example lost its targets
    assert len(packed_losses) == len(features)


def test_training_packed_or_padded_follows_the_same_trajectory(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    features = _features(tokenizer, 8)
    results = {}
    for packing in (True, False):
        recipe = batching.Recipe(packing=packing, group_by_length=False, gradient_checkpointing=False)
        model = _model(tiny_model_dir, recipe)
        lora = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
        model = get_peft_model(model, lora)
        arguments = TrainingArguments(
            output_dir=str(tmp_path / str(packing)),
            max_steps=4,
            per_device_train_batch_size=2,
            learning_rate=1e-2,
            logging_steps=1,
            save_strategy="no",
            use_cpu=True,
            seed=0,
            report_to="none",
            remove_unused_columns=False,
            disable_tqdm=True,
            train_sampling_strategy=batching.sampling_strategy(recipe),
        )
        trainer = Trainer(
            model=model,
            args=arguments,
            train_dataset=features,
            data_collator=batching.collator(tokenizer, recipe),
        )
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        weights = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
        results[packing] = losses, weights
    (packed_losses, packed_weights), (padded_losses, padded_weights) = results[True], results[False]
    assert len(packed_losses) == 4 and packed_losses == pytest.approx(padded_losses, rel=1e-4)
    for name, weight in packed_weights.items():
        assert torch.allclose(weight, padded_weights[name], atol=1e-5), name


def test_packing_is_chosen_only_where_it_is_exact():
    assert batching.choose_packing("auto", "llama", trust_remote_code=False)
    assert not batching.choose_packing("auto", "yuan", trust_remote_code=False)
    assert not batching.choose_packing("auto", "llama", trust_remote_code=True)
    assert not batching.choose_packing("off", "llama", trust_remote_code=False)
    with pytest.raises(UserError, match="crosses example boundaries"):
        batching.choose_packing("on", "yuan", trust_remote_code=False)
    with pytest.raises(UserError, match="--packing takes auto, on or off"):
        batching.check_choice("packing", "yes")


def test_a_padded_recipe_groups_by_length_and_checkpointing_prepares_the_model(tiny_model_dir):
    padded = batching.choose_recipe(packing=False, checkpointing=False)
    assert padded.group_by_length and batching.sampling_strategy(padded) == "group_by_length"
    assert batching.TUTORIAL.describe() == "batches padded; gradient checkpointing on"
    from transformers import AutoModelForCausalLM

    # what the recipe does to the model, not only what it says
    for recipe, checkpointed in ((padded, False), (batching.TUTORIAL, True)):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        batching.prepare_model(model, recipe)
        assert model.is_gradient_checkpointing is checkpointed and model.config.use_cache is False
        model.train()
        ids = torch.tensor([[1, 2, 3, 4]])
        model(input_ids=ids, labels=ids).loss.backward()
        assert model.get_input_embeddings().weight.grad is not None
