"""Training data: JSON, JSONL or CSV with `instruction`/`input`/`output` or `input`/`output`.

Everything is checked before a job exists, and every problem is one line that says what is wrong
and what to do about it.
"""

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

from registry.errors import UserError

SUPPORTED_SUFFIXES = (".json", ".jsonl", ".csv")
TEXT_FIELDS = ("instruction", "input", "output")


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path
    fingerprint: str  # sha256 of the file's bytes, first 16 hex digits
    records: list[dict]  # each has instruction, input and output as strings
    total_records: int  # before --limit


def load_dataset(path: str | Path, limit: int | None = None) -> Dataset:
    if not str(path).strip():
        raise UserError("No dataset given: enter the path of a .json, .jsonl or .csv file.")
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"Dataset file not found: {path}. Check the path (or upload the file).")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UserError(
            f"{path.name}: unsupported file type {suffix or '(none)'!r}; use .json, .jsonl or .csv."
        )
    raw = path.read_bytes()
    return parse_dataset(raw, suffix, name=path.name, path=path, limit=limit)


def parse_dataset(raw: bytes, suffix: str, *, name: str, path: Path | None = None, limit=None) -> Dataset:
    """Validate bytes already in memory (an upload) exactly as a file on disk."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{name} is not UTF-8 text (bad byte at offset {error.start}): save it as UTF-8 and retry."
        ) from None
    rows = {".json": _json_rows, ".jsonl": _jsonl_rows, ".csv": _csv_rows}[suffix](text, name)
    if not rows:
        raise UserError(f"{name} holds no examples: add at least one example with an 'output'.")
    records = [_record(row, number, name) for number, row in enumerate(rows, start=1)]
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, not {limit}.")
    return Dataset(
        name=name,
        path=Path(path) if path else Path(name),
        fingerprint=hashlib.sha256(raw).hexdigest()[:16],
        records=records[:limit] if limit else records,
        total_records=len(records),
    )


def split_holdout(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, list[dict]]:
    """Keep a reproducible random `fraction` of the examples out of training (same seed, same split,
    so a resumed job trains on exactly the same examples)."""
    import random

    if not 0 <= fraction < 1:
        raise UserError(f"--holdout must be at least 0 and below 1, not {fraction}.")
    order = list(range(len(dataset.records)))
    random.Random(seed).shuffle(order)
    held = set(order[: int(len(order) * fraction)])
    kept = [record for index, record in enumerate(dataset.records) if index not in held]
    heldout = [record for index, record in enumerate(dataset.records) if index in held]
    return Dataset(dataset.name, dataset.path, dataset.fingerprint, kept, dataset.total_records), heldout


def _json_rows(text: str, name: str) -> list:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(
            f"{name} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})."
        ) from None
    if not isinstance(data, list):
        raise UserError(
            f"{name} must hold a JSON list of examples, [{{...}}, ...], not a {type(data).__name__}."
        )
    return data


def _jsonl_rows(text: str, name: str) -> list:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise UserError(f"{name} line {number} is not valid JSON ({error.msg}).") from None
    return rows


def _csv_rows(text: str, name: str) -> list:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
    except csv.Error as error:
        raise UserError(f"{name} is not valid CSV ({error}).") from None
    if reader.fieldnames is None:
        return []
    return rows


def _record(row, number: int, name: str) -> dict:
    if not isinstance(row, dict):
        raise UserError(f"{name}: example {number} is not an object with 'input'/'output' fields.")
    if "output" not in row or ("input" not in row and "instruction" not in row):
        present = ", ".join(sorted(map(str, row))) or "none"
        raise UserError(
            f"{name}: example {number} lacks the fields 'output' and 'input' (or 'instruction'); "
            f"it has: {present}."
        )
    record = {}
    for field in TEXT_FIELDS:
        value = row.get(field)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise UserError(
                f"{name}: example {number} field {field!r} must be text, not {type(value).__name__}."
            )
        record[field] = value
    if not record["output"].strip():
        raise UserError(f"{name}: example {number} has an empty 'output'; fill it in or remove the example.")
    if not (record["instruction"].strip() or record["input"].strip()):
        raise UserError(f"{name}: example {number} has neither 'instruction' nor 'input' text.")
    return record
