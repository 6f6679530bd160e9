"""What the training page does, without Streamlit: check a request, start, resume or cancel jobs.

Checks here are the trainer's own (same functions), run before a job row exists, so a bad form
never leaves a job behind.
"""

import hashlib
import re
from dataclasses import replace
from pathlib import Path

from engine import models
from engine.roles import get_role
from registry import adapters as adapter_rows
from registry import home
from registry import jobs as job_rows
from registry.errors import UserError
from registry.names import check_name
from training import jobs as job_control
from training.config import TrainConfig
from training.data import SUPPORTED_SUFFIXES, load_dataset, parse_dataset

SAMPLES = {
    "translator": home.PROJECT_ROOT / "data" / "translator_sample.jsonl",
    "persona": home.PROJECT_ROOT / "data" / "persona_sample.json",
}
MAX_UPLOAD_BYTES = 50 * 1024 * 1024

# One click, on the built-in model and the bundled sample: ≤ 3 minutes on 2 CPU cores.
DEMO = TrainConfig(
    base="builtin",
    data=str(SAMPLES["translator"]),
    role="translator",
    epochs=2,
    lr=5e-4,
    batch_size=4,
    grad_accum=1,
)


def check_request(db, config: TrainConfig) -> TrainConfig:
    """Everything a form can get wrong, as one UserError; returns the config with a clean name."""
    name = check_name(config.name)
    if adapter_rows.get(db, name) is not None:
        raise UserError(f"An adapter named {name!r} already exists: pick another name.")
    if (home.adapters_dir() / name).exists():
        raise UserError(f"The folder for {name!r} exists but is not registered: pick another name.")
    job_control.refresh_liveness(db)
    if job_rows.active_for_name(db, name) is not None:
        raise UserError(f"A job is already training {name!r}.")
    get_role(db, config.role)
    models.parse_model_id(config.base)
    load_dataset(config.data, limit=config.limit or None)
    for label, value in (
        ("epochs", config.epochs),
        ("learning rate", config.lr),
        ("LoRA rank", config.lora_r),
    ):
        if value <= 0:
            raise UserError(f"The {label} must be greater than 0.")
    return replace(config, name=name)


def start(db, config: TrainConfig) -> dict:
    config = check_request(db, config)
    dataset = load_dataset(config.data, limit=config.limit or None)
    return job_control.launch(
        db,
        config.as_dict(),
        base_model=models.parse_model_id(config.base).model_id,
        role=config.role,
        dataset_path=str(Path(config.data).resolve()),
        dataset_name=dataset.name,
        dataset_fingerprint=dataset.fingerprint,
    )


def start_demo(db) -> dict:
    taken = {row["name"] for row in adapter_rows.list_all(db)}
    number = 1
    while (
        f"demo-translator-{number}" in taken or (home.adapters_dir() / f"demo-translator-{number}").exists()
    ):
        number += 1
    return start(db, replace(DEMO, name=f"demo-translator-{number}"))


def resume(db, job_id: int) -> dict:
    """Continue an interrupted, cancelled or failed job from its newest checkpoint."""
    job = job_rows.get(db, job_id)
    if job is None or job["status"] not in job_rows.RESUMABLE:
        raise UserError("Only interrupted, cancelled or failed jobs can be resumed.")
    log_path = Path(job["log_path"] or home.jobs_dir() / str(job_id) / "train.log")
    job_rows.update(db, job_id, status="queued", error=None, heartbeat_at=None, finished_at=None)
    process = job_control.spawn_trainer(["--job-id", str(job_id), "--resume"], log_path)
    job_rows.update(db, job_id, pid=process.pid)
    return job_rows.get(db, job_id)


def save_upload(name: str, data: bytes) -> Path:
    """Validate an uploaded dataset, then keep it under $TRANSLATOR_HOME/uploads with a safe name."""
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
    folder = home.home() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}-{digest}{suffix}"
    if not target.exists():
        staging = target.with_name(f".tmp-{target.name}")
        staging.write_bytes(data)
        staging.replace(target)
    return target
