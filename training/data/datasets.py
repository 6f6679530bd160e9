"""Training data: JSON, JSONL or CSV with `instruction`/`input`/`output` or `input`/`output`, or
OpenAI's chat format (`{"messages": [...]}`, JSON or JSONL).

A chat row becomes one record per assistant message it trains on (all of them, or those whose
`weight` is not 0, as OpenAI's fine-tuning does): the user's message before it as `input`, the turns
before that as `history`, its system message (if any) as `system`.

Everything is checked before a job exists, and every problem is one line that says what is wrong
and what to do about it.
"""

import csv
import hashlib
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path

from core import texts
from core.errors import UserError
from core.texts import Message

SUPPORTED_SUFFIXES = (".json", ".jsonl", ".csv")
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
TEXT_FIELDS = ("instruction", "input", "output")
CHAT_ROLES = ("system", "developer", "user", "assistant")


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path
    fingerprint: str  # sha256 of the file's bytes, first 16 hex digits
    records: list[dict]  # each has instruction, input and output as strings
    total_records: int  # before --limit


def load_dataset(path: str | Path, limit: int | None = None) -> Dataset:
    path, raw = read_data_file(path)
    return parse_dataset(raw, path.suffix.lower(), name=path.name, path=path, limit=limit)


def read_data_file(path: str | Path) -> tuple[Path, bytes]:
    """The bytes of a dataset file, after refusing what cannot be one (nothing given, a folder, a
    missing file, a suffix we do not read)."""
    if not str(path).strip():
        raise UserError("ERR_NO_DATA")
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError("ERR_DATA_FOLDER", path=path)
    if path.exists() and not path.is_file():
        raise UserError("ERR_DATA_NOT_REGULAR", path=path)
    if not path.is_file():
        raise UserError("ERR_DATA_MISSING", path=path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UserError("ERR_DATA_SUFFIX", name=path.name, suffix=suffix or Message("NOTHING"))
    return path, path.read_bytes()


def read_rows(raw: bytes, suffix: str, name: str) -> list:
    """The rows of a JSON, JSONL or CSV file's bytes (UTF-8), refusing an empty file."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError("ERR_NOT_UTF8", name=name, offset=error.start) from None
    rows = {".json": _json_rows, ".jsonl": _jsonl_rows, ".csv": _csv_rows}[suffix](text, name)
    if not rows:
        raise UserError("ERR_NO_EXAMPLES", name=name)
    return rows


def parse_dataset(raw: bytes, suffix: str, *, name: str, path: Path | None = None, limit=None) -> Dataset:
    """Validate bytes already in memory (an upload) exactly as a file on disk."""
    rows = read_rows(raw, suffix, name)
    records = [record for number, row in enumerate(rows, start=1) for record in _records(row, number, name)]
    if limit is not None and limit < 1:
        raise UserError("ERR_LIMIT", limit=limit)
    return Dataset(
        name=name,
        path=Path(path) if path else Path(name),
        fingerprint=fingerprint(raw),
        records=records[:limit] if limit else records,
        total_records=len(records),
    )


def write_jsonl(records: list[dict], path: Path) -> Dataset:
    """`records` written as a JSONL dataset file, and that file as load_dataset would read it back
    (same fingerprint), without reading it."""
    raw = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8")
    path.write_bytes(raw)
    return Dataset(path.name, path, fingerprint(raw), list(records), len(records))


def fingerprint(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def split_holdout(dataset, fraction: float, seed: int) -> tuple:
    """Keep a reproducible random `fraction` of the examples out of training (same seed, same split,
    so a resumed job trains on exactly the same examples)."""
    import random

    if not 0 <= fraction < 1:
        raise UserError("ERR_HOLDOUT", fraction=fraction)
    order = list(range(len(dataset.records)))
    random.Random(seed).shuffle(order)
    held = set(order[: int(len(order) * fraction)])
    kept = [record for index, record in enumerate(dataset.records) if index not in held]
    heldout = [record for index, record in enumerate(dataset.records) if index in held]
    return replace(dataset, records=kept), heldout


def _json_rows(text: str, name: str) -> list:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(
            "ERR_JSON", name=name, line=error.lineno, column=error.colno, error=error.msg
        ) from None
    if not isinstance(data, list):
        raise UserError("ERR_JSON_LIST", name=name, kind=type(data).__name__)
    return data


def _jsonl_rows(text: str, name: str) -> list:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise UserError("ERR_JSONL_LINE", name=name, line=number, error=error.msg) from None
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
                    "ERR_CSV_FIELDS",
                    name=name,
                    line=reader.line_num,
                    count=len(fields),
                    expected=len(header),
                    header=", ".join(header),
                )
            rows.append(dict(zip(header, fields, strict=True)))
    except csv.Error as error:
        raise UserError("ERR_CSV", name=name, error=error) from None
    return rows


def _records(row, number: int, name: str) -> list[dict]:
    if isinstance(row, dict) and "messages" in row:
        return chat_records(row["messages"], number, name)
    return [_record(row, number, name)]


def chat_records(messages, number: int, name: str) -> list[dict]:
    """The records of one row in OpenAI's chat format: one per assistant message it trains on."""
    where = {"name": name, "number": number}
    if not isinstance(messages, list) or not messages:
        raise UserError("ERR_CHAT_NOT_LIST", **where)
    system = None
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
            raise UserError("ERR_CHAT_MESSAGE", **where, index=index)
        if not isinstance(message.get("content"), str):
            kind = type(message.get("content")).__name__
            raise UserError("ERR_CHAT_CONTENT", **where, index=index, kind=kind)
        if message.get("weight", 1) not in (0, 1):
            raise UserError("ERR_CHAT_WEIGHT", **where, index=index, value=message.get("weight"))
    if messages[0]["role"] in ("system", "developer"):
        system, messages = messages[0]["content"], messages[1:]
    records, history = [], []
    for index in range(0, len(messages), 2):
        turn = messages[index : index + 2]
        if [m["role"] for m in turn] != ["user", "assistant"]:
            raise UserError("ERR_CHAT_TURNS", **where)
        question, answer = turn[0]["content"], turn[1]["content"]
        if not answer.strip():
            raise UserError("ERR_CHAT_EMPTY", **where, index=index + 1 + (system is not None))
        if turn[1].get("weight", 1):
            record = {"instruction": "", "input": question, "output": answer, "system": system}
            records.append({**record, "history": [list(pair) for pair in history]})
        history.append((question, answer))
    if not records:
        raise UserError("ERR_CHAT_NOTHING_TRAINED", **where)
    return records


def _record(row, number: int, name: str) -> dict:
    if not isinstance(row, dict):
        raise UserError("ERR_EXAMPLE_NOT_OBJECT", name=name, number=number)
    missing = [
        label
        for label, present in (
            (texts.FIELD_OUTPUT, "output" in row),
            (texts.FIELD_INPUT, "input" in row or "instruction" in row),
        )
        if not present
    ]
    if missing:
        present = ", ".join(sorted(map(str, row))) or Message("NOTHING")
        raise UserError(
            "ERR_EXAMPLE_FIELDS" if len(missing) > 1 else "ERR_EXAMPLE_FIELD",
            name=name,
            number=number,
            missing=texts.AND.join(missing),
            present=present,
        )
    record = {}
    for field in TEXT_FIELDS:
        value = row.get(field)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise UserError(
                "ERR_FIELD_TYPE", name=name, number=number, field=field, kind=type(value).__name__
            )
        record[field] = value
    if not record["output"].strip():
        raise UserError("ERR_EMPTY_OUTPUT", name=name, number=number)
    if not (record["instruction"].strip() or record["input"].strip()):
        raise UserError("ERR_NO_INPUT", name=name, number=number)
    return record


def save_upload(name: str, data: bytes, folder: Path, parse=parse_dataset) -> Path:
    """Validate an uploaded dataset (with `parse`, as a file on disk would be read), then keep it in
    `folder` under a safe, content-addressed name."""
    import re

    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UserError("ERR_UPLOAD_SUFFIX", name=name, suffix=suffix or Message("NOTHING"))
    if len(data) > MAX_UPLOAD_BYTES:
        raise UserError(
            "ERR_UPLOAD_SIZE", name=name, size=f"{len(data) / 1e6:.0f}", limit=MAX_UPLOAD_BYTES // 1_000_000
        )
    parse(data, suffix, name=name)
    stem = re.sub(r"[^\w.-]+", "_", Path(name).stem).strip("._")[:60] or "dataset"
    digest = hashlib.sha256(data).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}-{digest}{suffix}"
    if not target.exists():
        staging = target.with_name(f".tmp-{target.name}")
        staging.write_bytes(data)
        staging.replace(target)
    return target
