"""A training job from request to end: check, create, launch, watch, cancel, resume, reconcile.

Every way a job starts goes through `check`: the training page's Start, `python -m training.train`,
the page's Resume and `--resume`. It runs the trainer's own checks (settings and their ranges, the
name, role, prompt format, base model, dataset, tokenisation with max length) and returns the
canonical `Plan`; a job row exists only after it passes, and the trainer trains from that plan.

Who writes a job's status: the trainer (queued → running → evaluating → succeeded, failed or
cancelled) and `reconcile` here (a job whose trainer process is gone is interrupted). Pages only
read, through `get`, `list_recent` and `latest`, which reconcile first: a dead pid is a dead job,
whoever asks.

The trainer runs detached (`start_new_session=True`) with its output going straight to its log file:
never a pipe back to the UI, which would block the trainer once the pipe filled up.
"""

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from core import home, texts
from core.errors import UserError
from core.names import check_name
from engine import devices, models
from engine.adapters import read_metadata
from engine.roles import Role
from registry import adapters as adapter_rows
from registry import jobs as job_rows
from registry.db import to_json
from studio.processes import process_alive, process_start, spawn_detached
from studio.roles import get_role
from training import defaults, launchers
from training.batching import choose_packing
from training.config import TrainConfig, check_settings
from training.data import Dataset, load_dataset, split_holdout
from training.examples import TokenizedDataset, tokenize_dataset

# A job row whose trainer was never recorded (the app died between the row and the spawn) is
# given this long before it counts as interrupted.
UNSPAWNED_GRACE_SECONDS = 30.0
SAMPLES = {
    "translator": home.PROJECT_ROOT / "data" / "translator_sample.jsonl",
    "persona": home.PROJECT_ROOT / "data" / "persona_sample.json",
}
# One click, on the built-in model and the bundled sample: ≤ 3 minutes on 2 CPU cores.
DEMO = TrainConfig(
    base=models.CHINESE_BUILTIN,
    data=str(SAMPLES["translator"]),
    role="translator",
    epochs=2,
    lr=5e-4,
    grad_accum=1,
)


@dataclass(frozen=True)
class Plan:
    """A checked request: what the trainer trains, exactly as it was checked."""

    config: TrainConfig  # canonical: clean name, canonical base id, absolute data path, prompt format
    role: Role
    dataset: Dataset  # the examples trained on (the held-out ones removed)
    heldout: list[dict]  # never trained on; evaluated inside the job
    spec: models.ModelSpec
    model_dir: Path
    tokenizer: object
    tokenized: TokenizedDataset
    packing: bool
    by_size: defaults.Recommendation | None = None  # when --lr or --epochs was -1 (by model size)

    def job_fields(self) -> dict:
        return {
            "adapter_name": self.config.name,
            "config": self.config.as_dict(),
            "base_model": self.config.base,
            "role": self.config.role,
            "dataset_path": self.config.data,
            "dataset_name": self.dataset.name,
            "dataset_fingerprint": self.dataset.fingerprint,
            "num_examples": len(self.tokenized.examples),
            "num_truncated": self.tokenized.num_truncated,
        }


def check(db, config: TrainConfig, *, job: dict | None = None, base_dir: Path | None = None, progress=None):
    """Everything that can be wrong with a request, as one UserError, before anything is created.

    `job` is the job being run or resumed (its own name and folder are not "taken"); a relative
    dataset path is taken from `base_dir` (the caller's working directory for the CLI, the project
    folder for the page)."""
    config = check_settings(config.as_dict())
    launchers.check_strategy(config.strategy, config.device)
    devices.check_request(config.processes, config.device)
    name = check_name(config.name)
    refuse_taken_name(db, name, job)
    role = get_role(db, config.role)
    if not config.data.strip():
        raise UserError(texts.ERR_NO_DATA_CLI)
    return prepare(replace(config, name=name), role, base_dir=base_dir, progress=progress, job=job)


def prepare(config: TrainConfig, role: Role, *, base_dir=None, progress=None, job=None) -> "Plan":
    """The part of `check` that needs no registry: data, base model, tokenisation. The other ranks
    of a distributed job build their plan with it from rank 0's canonical config."""
    spec = models.parse_model_id(config.base)
    dataset = load_dataset(data_path(config.data, base_dir), limit=config.limit or None)
    fingerprint = job["dataset_fingerprint"] if job is not None else None
    if fingerprint not in (None, "", dataset.fingerprint):
        raise UserError(
            texts.ERR_DATA_CHANGED.format(
                name=dataset.name,
                job=job["id"],
                before=fingerprint,
                after=dataset.fingerprint,
            )
        )
    trained, heldout = split_holdout(dataset, config.holdout, config.seed)
    model_dir = models.resolve_model_dir(spec, progress)
    config, by_size = defaults.resolve(config, model_dir)
    model_type = models.check_model_folder(model_dir, config.trust_remote_code)
    packing = choose_packing(config.packing, model_type, config.trust_remote_code)
    tokenizer = models.load_tokenizer(model_dir, spec, config.trust_remote_code)
    prompt_format = (
        config.prompt_format or role.prompt_format or models.default_prompt_format(spec, model_dir, tokenizer)
    )
    tokenized = tokenize_dataset(trained, tokenizer, prompt_format, role, config.max_length)
    canonical = replace(config, base=spec.model_id, data=str(dataset.path), prompt_format=prompt_format)
    return Plan(canonical, role, trained, heldout, spec, model_dir, tokenizer, tokenized, packing, by_size)


def data_path(text: str, base_dir: Path | None = None) -> Path:
    """A dataset path as typed, made absolute: relative to `base_dir` (the page: the project folder,
    wherever the server was started), else to the working directory (the CLI)."""
    path = Path(text.strip()).expanduser()
    return (path if path.is_absolute() else Path(base_dir or Path.cwd()) / path).resolve()


def refuse_taken_name(db, name: str, job: dict | None) -> None:
    own = job["id"] if job else None
    registered = adapter_rows.get(db, name)
    # An adapter this very job registered before it was stopped is its own: resuming finishes it.
    if registered is not None and (own is None or registered["job_id"] != own):
        raise UserError(texts.ERR_ADAPTER_EXISTS.format(name=name))
    folder = home.adapters_dir() / name
    # A folder this very job renamed into place before it was stopped is its own, to register.
    if folder.exists() and (own is None or read_metadata(folder).get("job_id") != own):
        raise UserError(texts.ERR_FOLDER_UNREGISTERED.format(folder=folder))
    reconcile(db)
    active = job_rows.active_for_name(db, name)
    if active is not None and active["id"] != own:
        raise UserError(job_rows.already_training(active))


def create_job(db, plan: Plan, **fields) -> dict:
    """The job row and folder of a checked plan."""
    job = job_rows.create(db, **plan.job_fields(), **fields)
    job_dir = home.jobs_dir() / str(job["id"])
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "config.json").write_text(to_json(plan.config.as_dict()), encoding="utf-8")
    job_rows.update(db, job["id"], job_dir=str(job_dir), log_path=str(job_dir / "train.log"))
    return job_rows.get(db, job["id"])


def submit(db, config: TrainConfig, *, progress=None) -> dict:
    """The training page's Start: check, create the job, launch its detached trainer.
    A relative dataset path is taken from the project folder, wherever the server was started."""
    plan = check(db, config, base_dir=home.PROJECT_ROOT, progress=progress)
    job = create_job(db, plan)
    return _launch(db, job, ["--job-id", str(job["id"])])


def submit_form(db, form: dict, *, progress=None) -> dict:
    """The page's Start with what its form holds (any subset of the settings): the trainer's
    defaults fill the rest, and every value is typed and range-checked as a flag would be."""
    return submit(db, check_settings(form), progress=progress)


def start_demo(db) -> dict:
    taken = {row["name"] for row in adapter_rows.list_all(db)}
    number = 1
    while (
        f"demo-translator-{number}" in taken or (home.adapters_dir() / f"demo-translator-{number}").exists()
    ):
        number += 1
    return submit(db, replace(DEMO, name=f"demo-translator-{number}"))


def stored_config(job: dict, **overrides) -> TrainConfig:
    """The job's canonical config, with `overrides` (a resume may change e.g. the device)."""
    return check_settings({**job["config"], **overrides, "job_id": job["id"]}, f"job {job['id']}")


def find_resumable(db, name: str) -> dict:
    """The newest interrupted, cancelled or failed job of `name` (the CLI's --resume)."""
    name = check_name(name)
    reconcile(db)
    active = job_rows.active_for_name(db, name)
    if active is not None:
        raise UserError(job_rows.already_training(active))
    job = job_rows.latest_resumable(db, name)
    if job is None:
        raise UserError(texts.ERR_NOTHING_TO_RESUME.format(name=name))
    return job


def resume(db, job_id: int) -> dict:
    """The page's Resume: check the job again as it will run, then relaunch it from its newest
    complete checkpoint."""
    reconcile(db)
    job = job_rows.get(db, job_id)
    if job is None or job["status"] not in job_rows.RESUMABLE:
        raise UserError(texts.ERR_NOT_RESUMABLE)
    check(db, stored_config(job, resume=True), job=job)
    job_rows.update(
        db, job_id, status="queued", error=None, pid=None, heartbeat_at=time.time(), finished_at=None
    )
    return _launch(db, job, ["--job-id", str(job_id), "--resume"])


def claim(db, job: dict) -> dict:
    """The trainer takes a job: its own process is now the one the job lives or dies with."""
    job_rows.update(
        db,
        job["id"],
        status="queued",
        pid=os.getpid(),
        pid_started=process_start(os.getpid()),
        heartbeat_at=time.time(),
        finished_at=None,
        error=None,
    )
    return job_rows.get(db, job["id"])


def cancel(db, job_id: int) -> bool:
    """Ask the trainer to stop; it saves a checkpoint and marks the job cancelled itself."""
    job = get(db, job_id)
    if job is None or job["status"] not in job_rows.ACTIVE or not job["pid"]:
        return False
    os.kill(job["pid"], signal.SIGTERM)
    return True


def reconcile(db) -> list[int]:
    """Mark every active job whose trainer process is gone as interrupted; returns their ids."""
    interrupted = []
    for job in job_rows.active(db):
        if job["pid"]:
            if process_alive(job["pid"], job["pid_started"]):
                continue
        elif time.time() - max(job["heartbeat_at"] or 0, job["created_at"]) < UNSPAWNED_GRACE_SECONDS:
            continue
        if job_rows.mark_interrupted(
            db, job["id"], job["pid"], "The trainer process stopped without finishing."
        ):
            remove_staging(job["adapter_name"], job["id"])
            interrupted.append(job["id"])
    return interrupted


def get(db, job_id: int) -> dict | None:
    reconcile(db)
    return job_rows.get(db, job_id)


def list_recent(db, limit: int = 200) -> list[dict]:
    reconcile(db)
    return job_rows.list_all(db, limit=limit)


def staging_folder(name: str, job_id: int) -> Path:
    """Where a job writes its adapter before renaming it into place."""
    return home.adapters_dir() / f".tmp-{name}-job{job_id}"


def remove_staging(name: str, job_id: int) -> None:
    shutil.rmtree(staging_folder(name, job_id), ignore_errors=True)


def _launch(db, job: dict, arguments: list[str]) -> dict:
    log_path = Path(job["log_path"] or home.jobs_dir() / str(job["id"]) / "train.log")
    process = spawn_trainer(arguments, log_path)
    job_rows.update(db, job["id"], pid=process.pid, pid_started=process_start(process.pid))
    return job_rows.get(db, job["id"])


def spawn_trainer(arguments: list[str], log_path: Path) -> subprocess.Popen:
    """`python -m training.train ARGS`, detached, appending its output to the job's log. It waits
    for its devices, then becomes the launcher of as many processes as the job asks for."""
    return spawn_detached("training.train", arguments, log_path)


def rank_logs(job: dict) -> list[tuple[int, Path]]:
    """The logs of a distributed job's other ranks (rank 0's is the job's own log)."""
    folder = Path(job.get("job_dir") or "")
    if not folder.is_dir():
        return []
    found = [(int(path.stem[4:]), path) for path in folder.glob("rank*.log") if path.stem[4:].isdigit()]
    return sorted(found)
