"""What the training page shows before a job starts: rows, the first example as the model sees it,
and how long the examples are against max_length."""

from dataclasses import dataclass

from engine import formats
from engine.roles import Role
from training.data import Dataset


@dataclass(frozen=True)
class Preview:
    first_prompt: str  # decoded, special tokens included, as the tutorials print it
    first_target: str
    lengths: list[int]  # full token length of every example
    max_length: int

    @property
    def num_truncated(self) -> int:
        return sum(length > self.max_length for length in self.lengths)

    def histogram(self, bins: int = 12) -> dict[str, int]:
        """Counts per length range, ordered, for a bar chart."""
        top = max(max(self.lengths), self.max_length)
        width = max(1, -(-top // bins))
        counts = {}
        for start in range(0, top + 1, width):
            label = f"{start:>4}-{start + width - 1}"
            counts[label] = sum(start <= length < start + width for length in self.lengths)
        return counts


def preview(dataset: Dataset, tokenizer, prompt_format: str, role: Role, max_length: int) -> Preview:
    lengths, first = [], None
    for record in dataset.records:
        example = formats.training_example(tokenizer, prompt_format, role, record, max_length=10**9)
        lengths.append(len(example.input_ids))
        first = first or example
    prompt_ids = first.input_ids[: first.prompt_length]
    target_ids = first.input_ids[first.prompt_length :]
    return Preview(
        first_prompt=tokenizer.decode(prompt_ids),
        first_target=tokenizer.decode(target_ids),
        lengths=lengths,
        max_length=max_length,
    )
