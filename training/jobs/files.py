"""Training data handed over through the API's `/v1/files` (OpenAI's Files API): checked as the
trainer will read it, kept whole, then listed, read and deleted by whoever may.

An upload is read by the same parsers as a dataset the page or the CLI names (instruction data,
OpenAI's chat format, or preference data when its rows are pairs), so a file that is kept is one a
job can train on, and a bad one is refused with the same message, naming its line, before any byte
is kept. Bytes are written to a staging name and renamed into place before the row exists: a file
is complete or absent.
"""

import contextlib
import os
import secrets
from pathlib import Path

from core import home, texts
from core.errors import UserError
from registry import files as file_rows
from registry import jobs as job_rows
from registry.files import File
from studio.accounts import LOCAL, Asker
from studio.supervisor import staging_file
from training.data import pairs
from training.data.datasets import MAX_UPLOAD_BYTES, SUPPORTED_SUFFIXES, parse_dataset, read_rows

PURPOSE = "fine-tune"
INSTRUCTIONS, PREFERENCES = "instructions", "preferences"


def upload(db, filename: str, data: bytes, purpose: str, asker: Asker = LOCAL) -> File:
    """Check `data` as training data and keep it; the file's row, owned by `asker`."""
    if not asker.may_train:
        raise UserError("ERR_VIEWER_READ_ONLY")
    if purpose != PURPOSE:
        raise UserError("ERR_FILE_PURPOSE", purpose=purpose)
    name = Path(filename or "").name
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UserError("ERR_UPLOAD_SUFFIX", name=name or "?", suffix=suffix or texts.Message("NOTHING"))
    if len(data) > MAX_UPLOAD_BYTES:
        raise UserError(
            "ERR_UPLOAD_SIZE", name=name, size=f"{len(data) / 1e6:.0f}", limit=MAX_UPLOAD_BYTES // 1_000_000
        )
    kind, records = read(data, suffix, name)
    file_id = f"file-{secrets.token_hex(12)}"
    target = home.files_dir() / f"{file_id}{suffix}"
    staging = staging_file(target, os.getpid())
    try:
        staging.write_bytes(data)
        staging.replace(target)
        return file_rows.create(
            db,
            id=file_id,
            filename=name,
            purpose=purpose,
            bytes=len(data),
            kind=kind,
            records=records,
            path=str(target),
            owner_id=asker.id,
        )
    except BaseException:
        staging.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        raise


def read(data: bytes, suffix: str, name: str) -> tuple[str, int]:
    """What the file holds (instructions or preferences) and how many records the trainer reads."""
    if pairs.holds_preferences(read_rows(data, suffix, name)):
        return PREFERENCES, len(pairs.parse(data, suffix, name=name).records)
    return INSTRUCTIONS, len(parse_dataset(data, suffix, name=name).records)


def get(db, file_id: str, asker: Asker = LOCAL) -> File:
    """The file if `asker` may see it; otherwise the refusal of a missing one."""
    found = file_rows.get(db, file_id)
    if found is None or not asker.owns(found.owner_id):
        raise UserError("ERR_NOT_FOUND_FOR_YOU", what=texts.Message("OBJECT_KINDS.file"), name=file_id)
    return found


def list_visible(db, asker: Asker = LOCAL, purpose: str | None = None) -> list[File]:
    """The files `asker` may see, newest first: their own (everyone's for the owner)."""
    return [found for found in file_rows.list_all(db, purpose) if asker.owns(found.owner_id)]


def content(db, file_id: str, asker: Asker = LOCAL) -> bytes:
    found = get(db, file_id, asker)
    try:
        return Path(found.path).read_bytes()
    except FileNotFoundError:
        raise UserError("ERR_FILE_GONE", file=file_id, path=found.path) from None


def delete(db, file_id: str, asker: Asker = LOCAL) -> None:
    """Forget the file and its bytes; refused while a job that is not over trains on it."""
    found = get(db, file_id, asker)
    asker.may_change(found.owner_id, "file", file_id)
    for job in job_rows.active(db):
        if found.path in (job.dataset_path, job.config.get("validation_data")):
            raise UserError("ERR_FILE_IN_USE", file=file_id, job=job.id)
    file_rows.delete(db, file_id)
    with contextlib.suppress(FileNotFoundError):
        Path(found.path).unlink()


def of_path(db, path: str | None) -> File | None:
    """The uploaded file a job's dataset path is, if it is one."""
    return file_rows.by_path(db, path) if path else None
