"""Preference tuning: TRL's trainers, fed the studio's own tokens.

TRL tokenises text itself; a job's plan already holds its preference records as token ids, made by
engine.formats exactly as chat renders the prompt, so each trainer here takes those ids:
- DPO (`trl.DPOTrainer`, with the loss variants of training.config.DPO_LOSSES), KTO
  (`trl.KTOTrainer`, on judged answers; pairs are split into a desirable and an undesirable answer)
  and ORPO (`trl.experimental.orpo.ORPOTrainer`, which needs no reference model).
- The reference of DPO and KTO is the adapter the job continues: TRL copies the trainable adapter
  into a frozen "ref" adapter on the same base weights, so the reference costs a LoRA, not a second
  model. From the base model (no parent), the reference is the base with the adapter switched off.
- Each checkpoint is scored on the held-out records (`score`) by the implicit reward of each
  answer, beta · (log π(y|x) − log π_ref(y|x)): how often the chosen answer gets the higher reward
  (accuracy) and by how much (margin). The same measure for every method, so runs can be compared;
  ORPO's reference there is the parent adapter too (loaded frozen, `add_reference`).
"""

import logging
import os

from engine import formats
from training.config import TrainConfig

REFERENCE = "ref"  # TRL's name for the frozen copy of the adapter a DPO or KTO job continues
TRAINED = "default"
LOGGED = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "kl", "nll_loss")

log = logging.getLogger("translator.train")


def micro_batches(config: TrainConfig, micro: int, accumulation: int) -> tuple[int, int]:
    """KTO estimates its KL term from the other answers of a micro-batch: it needs two or more (the
    same examples per optimizer step)."""
    if config.method != "kto" or config.loss != "kto" or micro > 1:
        return micro, accumulation
    total = micro * accumulation
    return (2, total // 2) if total % 2 == 0 else (total, 1)


def add_reference(model, plan) -> None:
    """ORPO trains without a reference; its checkpoints are still scored against the parent, which
    is loaded frozen next to the trained adapter (DPO and KTO get theirs from TRL)."""
    if plan.parent is not None and REFERENCE not in model.peft_config:
        model.load_adapter(str(plan.parent.path), adapter_name=REFERENCE, is_trainable=False)
        model.set_adapter(TRAINED)


def drop_reference(model) -> None:
    """The published adapter is the trained one alone."""
    if REFERENCE in model.peft_config:
        model.delete_adapter(REFERENCE)
        model.set_adapter(TRAINED)


def rows(plan) -> list[dict]:
    """The plan's tokens as the rows a TRL trainer reads."""
    if plan.tokenized.paired:
        return [
            {"prompt_ids": e.prompt_ids, "chosen_ids": e.chosen_ids, "rejected_ids": e.rejected_ids}
            for e in plan.tokenized.examples
        ]
    return [
        {"prompt_ids": e.prompt_ids, "completion_ids": e.chosen_ids, "label": e.label}
        for e in plan.tokenized.examples
    ]


def make_trainer(model, arguments: dict, plan, callbacks: list):
    """The TRL trainer of the job's method over the plan's tokens; `arguments` are the Trainer's
    settings every kind of job shares (training.trainer.fit)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import datasets
    from datasets import Dataset

    datasets.disable_progress_bars()  # the job's log is read by people; its own lines say how far it got
    datasets.logging.set_verbosity_error()

    config = plan.config
    tokenizer = plan.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = Dataset.from_list(rows(plan))
    common = dict(model=model, train_dataset=data, processing_class=tokenizer, callbacks=callbacks)
    if config.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**arguments, beta=config.beta, loss_type=[config.loss], max_length=config.max_length)
        return _taking_tokens(DPOTrainer)(args=args, **common)
    if config.method == "kto":
        from trl import KTOConfig, KTOTrainer

        args = KTOConfig(
            **arguments,
            beta=config.beta,
            loss_type=config.loss,
            max_length=config.max_length,
            train_sampling_strategy="sequential",  # the KL answers are the next examples' (TRL)
        )
        return _taking_tokens(KTOTrainer)(args=args, **common)
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = ORPOConfig(**arguments, beta=config.beta, max_length=config.max_length)
    return _orpo_taking_tokens(ORPOTrainer)(args=args, **common)


def _taking_tokens(trainer_class):
    """DPO's and KTO's trainer with our ids for their tokenisation (KTO still pairs each answer with
    the next one's, for its KL estimate, as TRL does)."""

    class TakingTokens(trainer_class):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if getattr(self, "calculate_KL", False):
                dataset = dataset.map(
                    _next_answers, batched=True, batch_size=args.per_device_train_batch_size
                )
            return dataset

    TakingTokens.__name__ = trainer_class.__name__
    return TakingTokens


def _next_answers(batch: dict) -> dict:
    answers = batch["completion_ids"]
    batch["KL_completion_ids"] = [answers[-1], *answers[:-1]]
    return batch


def _orpo_taking_tokens(trainer_class):
    """ORPO's trainer with our ids: its rows' keys, its labels (-100 over the prompt)."""

    class TakingTokens(trainer_class):
        def tokenize_row(self, feature, model=None) -> dict:
            prompt = feature["prompt_ids"]
            row = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
            for side in ("chosen", "rejected"):
                ids = prompt + feature[f"{side}_ids"]
                row[f"{side}_input_ids"] = ids
                row[f"{side}_attention_mask"] = [1] * len(ids)
                row[f"{side}_labels"] = [formats.IGNORE_INDEX] * len(prompt) + feature[f"{side}_ids"]
            return row

    TakingTokens.__name__ = trainer_class.__name__
    return TakingTokens


def logged(logs: dict) -> dict:
    """What a preference job logs besides the loss, as the registry keeps it."""
    return {key: float(logs[key]) for key in LOGGED if isinstance(logs.get(key), int | float)}


# --- held-out scoring -----------------------------------------------------------------------------


def score(model, plan, records: list[dict], stop=None) -> dict:
    """The held-out records' implicit rewards under the model as it is now, against the reference:
    accuracy (pairs whose chosen answer gets the higher reward; for judged answers, rewards whose
    sign matches the verdict), the mean margin, and the mean reward of each side. `stop(done)` may
    raise to end scoring early (a cancel)."""
    import torch
    from trl.trainer.utils import use_adapter

    beta = plan.config.beta
    reference = REFERENCE if REFERENCE in model.peft_config else None
    chosen, rejected, verdicts = [], [], []
    model.eval()
    with torch.no_grad():
        for done, record in enumerate(records):
            example = formats.preference_example(
                plan.tokenizer, plan.config.prompt_format, plan.role, record, plan.config.max_length
            )
            if example is None:
                continue
            answers = [example.chosen_ids] + ([example.rejected_ids] if example.rejected_ids else [])
            policy = [_answer_logp(model, example.prompt_ids, answer) for answer in answers]
            with use_adapter(model, reference):
                base = [_answer_logp(model, example.prompt_ids, answer) for answer in answers]
            rewards = [beta * (mine - theirs) for mine, theirs in zip(policy, base, strict=True)]
            if example.label is None:
                chosen.append(rewards[0])
                rejected.append(rewards[1])
            else:
                (chosen if example.label else rejected).append(rewards[0])
                verdicts.append((rewards[0] > 0) == example.label)
            if stop is not None:
                stop(done + 1)
    if verdicts:
        accuracy = sum(verdicts) / len(verdicts)
    else:
        accuracy = sum(c > r for c, r in zip(chosen, rejected, strict=True)) / max(len(chosen), 1)
    mean = lambda values: sum(values) / len(values) if values else 0.0  # noqa: E731
    return {
        "accuracy": accuracy,
        "margin": mean(chosen) - mean(rejected),
        "chosen_reward": mean(chosen),
        "rejected_reward": mean(rejected),
    }


def _answer_logp(model, prompt: list[int], answer: list[int]) -> float:
    """log π(answer | prompt): the sum over the answer's tokens, logits only where they are predicted."""
    import torch

    ids = torch.tensor([prompt + answer], device=model.device)
    logits = model(input_ids=ids, logits_to_keep=len(answer) + 1).logits[0, :-1].float()
    targets = ids[0, len(prompt) :]
    return torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).sum().item()
