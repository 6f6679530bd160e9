"""Turn validated records into token ids and labels, counting what truncation does to them."""

from dataclasses import dataclass

from core import texts
from core.errors import UserError
from engine import formats
from engine.roles import Role
from training.data.datasets import Dataset

PROGRESS_EVERY = 1000


@dataclass(frozen=True)
class TokenizedDataset:
    examples: list[formats.TrainingExample]
    num_records: int
    num_truncated: int  # kept, but their target was cut at max_length
    num_dropped: int  # the prompt alone filled max_length: nothing left to learn from
    max_length: int

    @property
    def num_tokens(self) -> int:
        return sum(len(example.input_ids) for example in self.examples)

    @property
    def num_target_tokens(self) -> int:
        return sum(
            sum(1 for label in example.labels if label != formats.IGNORE_INDEX) for example in self.examples
        )

    def summary(self) -> str:
        return (
            f"{len(self.examples)} examples, {self.num_tokens} tokens "
            f"({self.num_target_tokens} trained on); {self.num_truncated} truncated and "
            f"{self.num_dropped} dropped at max_length {self.max_length}"
        )


def tokenize_dataset(
    dataset: Dataset, tokenizer, prompt_format: str, role: Role, max_length: int, progress=None
) -> TokenizedDataset:
    """`progress(fraction, text)`, when given, hears how far it got, every 1,000 examples."""
    examples, dropped = [], 0
    total = len(dataset.records)
    for number, record in enumerate(dataset.records):
        if progress is not None and number % PROGRESS_EVERY == 0 and total > PROGRESS_EVERY:
            progress(number / total, texts.TOKENIZING.format(done=number, total=total, name=dataset.name))
        example = formats.training_example(tokenizer, prompt_format, role, record, max_length)
        if example is None:
            dropped += 1
        else:
            examples.append(example)
    if not examples:
        raise UserError("ERR_ALL_TRUNCATED", name=dataset.name, max_length=max_length)
    truncated = sum(example.truncated for example in examples)
    return TokenizedDataset(examples, len(dataset.records), truncated, dropped, max_length)


@dataclass(frozen=True)
class TokenizedPairs:
    """Preference records as token ids (engine.formats.PreferenceExample), with what truncation did."""

    examples: list[formats.PreferenceExample]
    num_records: int
    num_truncated: int  # kept, but an answer was cut at max_length
    num_dropped: int  # the prompt alone filled max_length (or max_prompt_length)
    max_length: int

    @property
    def paired(self) -> bool:
        return bool(self.examples) and self.examples[0].label is None

    @property
    def num_tokens(self) -> int:
        """Tokens the model reads: the prompt once per answer, and each answer."""
        return sum(
            len(e.prompt_ids) * (2 if self.paired else 1) + len(e.chosen_ids) + len(e.rejected_ids)
            for e in self.examples
        )

    @property
    def num_target_tokens(self) -> int:
        return sum(len(e.chosen_ids) + len(e.rejected_ids) for e in self.examples)

    def summary(self) -> str:
        what = "pairs" if self.paired else "judged answers"
        return (
            f"{len(self.examples)} {what}, {self.num_tokens} tokens ({self.num_target_tokens} in the "
            f"answers); {self.num_truncated} truncated and {self.num_dropped} dropped at max_length "
            f"{self.max_length}"
        )


def tokenize_pairs(
    records: list[dict],
    name: str,
    tokenizer,
    prompt_format: str,
    role: Role,
    max_length: int,
    max_prompt_length: int = 0,
    progress=None,
) -> TokenizedPairs:
    """Preference records (training/data/pairs.py) as ids; a prompt longer than `max_prompt_length`
    (0: no limit of its own) is dropped like one that fills `max_length`."""
    examples, dropped = [], 0
    total = len(records)
    for number, record in enumerate(records):
        if progress is not None and number % PROGRESS_EVERY == 0 and total > PROGRESS_EVERY:
            progress(number / total, texts.TOKENIZING.format(done=number, total=total, name=name))
        example = formats.preference_example(tokenizer, prompt_format, role, record, max_length)
        if example is None or (max_prompt_length and len(example.prompt_ids) > max_prompt_length):
            dropped += 1
        else:
            examples.append(example)
    if not examples:
        raise UserError("ERR_ALL_TRUNCATED", name=name, max_length=max_length)
    truncated = sum(example.truncated for example in examples)
    return TokenizedPairs(examples, total, truncated, dropped, max_length)
