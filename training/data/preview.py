"""What the training and preference pages show before a job starts: rows, the first example as the
model sees it, and how long the examples are against max_length."""

from dataclasses import dataclass

from engine import formats
from engine.roles import Role
from training.data.datasets import Dataset
from training.data.examples import TokenizedPairs


@dataclass(frozen=True)
class Preview:
    first_prompt: str  # decoded, special tokens included, as the tutorials print it
    first_target: str
    lengths: list[int]  # full token length of every example
    max_length: int
    prompt_lengths: tuple[int, ...] = ()  # each example's prompt tokens

    def longest_trained(self) -> tuple[int, int]:
        """(tokens of the longest example as trained, target tokens of the example with the most),
        after max_length cuts them: what memory follows (training.parallel.memory)."""
        kept = [min(length, self.max_length) for length in self.lengths]
        targets = [max(length - prompt, 0) for length, prompt in zip(kept, self.prompt_lengths, strict=True)]
        return max(kept, default=0), max(targets, default=0)

    @property
    def num_truncated(self) -> int:
        return sum(length > self.max_length for length in self.lengths)

    def histogram(self, bins: int = 12) -> dict[str, int]:
        return histogram(self.lengths, self.max_length, bins)


def histogram(lengths: list[int], max_length: int, bins: int = 12) -> dict[str, int]:
    """Counts per length range, ordered, for a bar chart."""
    top = max(max(lengths, default=0), max_length)
    width = max(1, -(-top // bins))
    counts = {}
    for start in range(0, top + 1, width):
        label = f"{start:>4}-{start + width - 1}"
        counts[label] = sum(start <= length < start + width for length in lengths)
    return counts


def preview(dataset: Dataset, tokenizer, prompt_format: str, role: Role, max_length: int) -> Preview:
    lengths, prompts, first = [], [], None
    for record in dataset.records:
        example = formats.training_example(tokenizer, prompt_format, role, record, max_length=10**9)
        lengths.append(len(example.input_ids))
        prompts.append(example.prompt_length)
        first = first or example
    prompt_ids = first.input_ids[: first.prompt_length]
    target_ids = first.input_ids[first.prompt_length :]
    return Preview(
        first_prompt=tokenizer.decode(prompt_ids),
        first_target=tokenizer.decode(target_ids),
        lengths=lengths,
        max_length=max_length,
        prompt_lengths=tuple(prompts),
    )


@dataclass(frozen=True)
class PairPreview:
    """Preference records as a preference job will read them (training.data.examples.tokenize_pairs)."""

    records: list[dict]  # as trained: a KTO job reads pairs as two judged answers each
    pairs: TokenizedPairs
    first_prompt: str  # decoded, special tokens included
    first_chosen: str  # the chosen answer, or the judged one
    first_rejected: str  # "" for a judged answer
    first_label: bool | None  # a judged answer's verdict

    @property
    def lengths(self) -> list[int]:
        return [example.full_length for example in self.pairs.examples]

    def histogram(self, bins: int = 12) -> dict[str, int]:
        return histogram(self.lengths, self.pairs.max_length, bins)


def preference_preview(
    records: list[dict],
    tokenizer,
    prompt_format: str,
    role: Role,
    *,
    method: str,
    max_length: int,
    max_prompt_length: int = 0,
) -> PairPreview:
    """The first record as the model sees it, with counts of what max_length keeps, cuts and drops.
    Raises UserError (as the job would) when nothing fits."""
    from training.data.examples import tokenize_pairs
    from training.data.pairs import unpaired

    read = unpaired(records) if method == "kto" else records
    tokenized = tokenize_pairs(read, "preview", tokenizer, prompt_format, role, max_length, max_prompt_length)
    first = tokenized.examples[0]
    return PairPreview(
        records=read,
        pairs=tokenized,
        first_prompt=tokenizer.decode(first.prompt_ids),
        first_chosen=tokenizer.decode(first.chosen_ids),
        first_rejected=tokenizer.decode(first.rejected_ids) if first.rejected_ids else "",
        first_label=first.label,
    )
