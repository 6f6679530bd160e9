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
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
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
    if path.is_dir():
        raise UserError(
            f"{path} is a folder, not a dataset file: give the path of a .json, .jsonl or .csv file."
        )
    if path.exists() and not path.is_file():
        raise UserError(f"{path} is not a regular file (a pipe or a device): save the data to a file first.")
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
    """Rows as dicts. A row with more or fewer fields than the header is refused: an unquoted comma
    in a value would otherwise shift the text into the wrong field (or drop it) silently."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return []
        rows = []
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):
                raise UserError(
                    f"{name} line {reader.line_num} has {len(fields)} fields but the header has "
                    f"{len(header)} ({', '.join(header)}): put a value that contains a comma in "
                    'double quotes, e.g. "high fever, chills".'
                )
            rows.append(dict(zip(header, fields, strict=True)))
    except csv.Error as error:
        raise UserError(f"{name} is not valid CSV ({error}).") from None
    return rows


def _record(row, number: int, name: str) -> dict:
    if not isinstance(row, dict):
        raise UserError(f"{name}: example {number} is not an object with 'input'/'output' fields.")
    missing = [
        label
        for label, present in (
            ("'output'", "output" in row),
            ("'input' (or 'instruction')", "input" in row or "instruction" in row),
        )
        if not present
    ]
    if missing:
        present = ", ".join(sorted(map(str, row))) or "none"
        raise UserError(
            f"{name}: example {number} lacks the field{'s' if len(missing) > 1 else ''} "
            f"{' and '.join(missing)}; it has: {present}."
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


def save_upload(name: str, data: bytes, folder: Path) -> Path:
    """Validate an uploaded dataset, then keep it in `folder` under a safe, content-addressed name."""
    import re

    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UserError(
            f"{name}: unsupported file type {suffix or '(none)'!r}; upload .json, .jsonl or .csv."
        )
    if len(data) > MAX_UPLOAD_BYTES:
        raise UserError(
            f"{name} is {len(data) / 1e6:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 1_000_000} MB."
        )
    parse_dataset(data, suffix, name=name)
    stem = re.sub(r"[^\w.-]+", "_", Path(name).stem).strip("._")[:60] or "dataset"
    digest = hashlib.sha256(data).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}-{digest}{suffix}"
    if not target.exists():
        staging = target.with_name(f".tmp-{target.name}")
        staging.write_bytes(data)
        staging.replace(target)
    return target
