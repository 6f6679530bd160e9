"""A training job from request to end: check, create, launch, cancel, resume; the supervisor watches it.

Every way a job starts goes through `check`: the training page's Start, `python -m training.train`,
the page's Resume and `--resume`. It runs the trainer's own checks (settings and their ranges, the
name, role, prompt format, base model, dataset, tokenisation with max length) and returns the
canonical `Plan`; a job row exists only after it passes, and the trainer trains from that plan.

Who writes a job's status: the trainer (queued → running → evaluating → succeeded, failed or
cancelled) and the supervisor (`studio.supervisor.reconcile`: a job whose trainer process is gone
is interrupted). Pages only read, through `get` and `list_recent`, which never write: a dead pid
reads as an interrupted job, whoever asks, and the supervisor's tick writes it down. The trainer is
started, stopped and watched by the supervisor, as every detached process is.
"""

import os
import time
from dataclasses import replace
from pathlib import Path

from core import home, texts
from core.errors import UserError
from core.names import check_name
from engine import catalogue, devices, loading
from engine.adapters import check_folder, lora_settings, read_metadata
from registry import adapters as adapter_rows
from registry import jobs as job_rows
from registry.adapters import Adapter
from registry.db import to_json
from registry.jobs import Job
from studio import supervisor
from studio.accounts import LOCAL, Asker, audit, visible_adapter
from studio.roles import get_role
from training.config import DPO_LOSSES, LOSSES, TrainConfig, check_settings
from training.evaluation import rewards
from training.jobs import cluster, plans, sweep, tracking
from training.parallel import launchers

SAMPLES = {
    "translator": home.PROJECT_ROOT / "data" / "translator_sample.jsonl",
    "persona": home.PROJECT_ROOT / "data" / "persona_sample.json",
}
PREFERENCE_SAMPLES = {"translator": home.PROJECT_ROOT / "data" / "translator_pairs.jsonl"}
# One click, on the built-in model and the bundled sample: ≤ 3 minutes on 2 CPU cores.
DEMO = TrainConfig(
    base=catalogue.CHINESE_BUILTIN,
    data=str(SAMPLES["translator"]),
    role="translator",
    epochs=2,
    lr=5e-4,
    grad_accum=1,
)


def check_request(
    db,
    settings: dict | TrainConfig,
    *,
    job=None,
    base_dir=None,
    progress=None,
    tokenizers=None,
    asker: Asker = LOCAL,
) -> plans.Plan:
    """Everything that can be wrong with a request, as one UserError, before anything is created;
    the job's plan when nothing is. The one check of a request: `settings` (a dict, or a config to
    check again) are typed and range-checked here.

    `job` is the job being resumed (its own name and folder are not "taken", its dataset must be
    unchanged); a relative dataset path is taken from `base_dir` (the caller's working directory
    for the CLI, the project folder for the page). `asker` must be allowed to train, and to see the
    adapter a job continues."""
    if not asker.may_train:
        raise UserError("ERR_VIEWER_READ_ONLY")
    if isinstance(settings, TrainConfig):
        settings = settings.as_dict()
    config = check_settings(settings, f"job {job.id}" if job else "")
    check_method(config)
    check_quantize(config)
    sweep.check_grid(config)
    launchers.check_strategy(config)
    if job is not None:
        check_same_sharding(job, config)
    if config.cluster == "slurm":
        cluster.check(config)  # Slurm allocates the devices: this machine's count does not matter
    else:
        devices.check_enough_gpus(config.processes, config.device)
    name = check_name(config.name)
    refuse_taken_name(db, name, job)
    parent = None
    if config.parent:
        parent, config = continue_from(db, config, given=settings, asker=asker)
    role = get_role(db, config.role)
    if not config.data.strip():
        raise UserError("ERR_NO_DATA_CLI")
    if config.rewarded:
        rewards.check_request(config, role)
    config = replace(config, mlflow_uri=tracking.checked_uri(config.mlflow_uri, base_dir))
    if config.validation_data.strip():
        config = replace(config, validation_data=str(data_path(config.validation_data, base_dir)))
    if config.cluster == "slurm":
        cluster.test_submission(config)
    return plans.make(
        replace(config, name=name),
        role,
        data_path(config.data, base_dir),
        parent=plans.parent_ref(parent) if parent else None,
        fingerprint=job.dataset_fingerprint if job else None,
        job_id=job.id if job else None,
        progress=progress,
        tokenizers=tokenizers,
    )


def check_same_sharding(job: Job, config: TrainConfig) -> None:
    """FSDP checkpoints keep the optimizer's state in their own files, which another strategy's
    resume would skip silently (a fresh optimizer): a resume keeps to FSDP or away from it."""
    was = job.config.get("strategy", "ddp")
    if (was == "fsdp") != (config.strategy == "fsdp"):
        raise UserError("ERR_RESUME_SHARDING", job=job.id, was=was, now=config.strategy)


def check_quantize(config: TrainConfig) -> None:
    """QLoRA where it is wired and tested: plain data parallelism, supervised or sweep jobs, a CUDA
    GPU or the CPU, with bitsandbytes installed."""
    if config.quantize == "none":
        return
    refused = [
        (config.strategy != "ddp", f"--strategy {config.strategy}", texts.QUANTIZE_NOT_SHARDED),
        (config.prefers or config.rewarded, config.method.upper(), texts.QUANTIZE_NOT_PREFERENCE),
        (config.device == "mps", "--device mps", texts.QUANTIZE_NOT_MPS),
    ]
    for applies, what, why in refused:
        if applies:
            raise UserError("ERR_QUANTIZE_WITH", what=what, quantize=config.quantize, why=why)
    loading.check_quantization_available()


def check_method(config: TrainConfig) -> None:
    """A loss variant belongs to its method (ORPO has none of its own)."""
    if config.loss_type and config.loss_type not in LOSSES[config.method]:
        method = config.method.upper()
        if not LOSSES[config.method]:
            raise UserError("ERR_LOSS_NONE", loss=config.loss_type, method=method)
        owner = "DPO" if config.loss_type in DPO_LOSSES else "KTO"
        choices = ", ".join(LOSSES[config.method])
        raise UserError(
            "ERR_LOSS_FOR_METHOD", loss=config.loss_type, owner=owner, method=method, choices=choices
        )


def continue_from(
    db, config: TrainConfig, *, given: dict, asker: Asker = LOCAL
) -> tuple[Adapter, TrainConfig]:
    """The adapter a job continues, and the config with what follows from it: its base model, role
    and prompt format unless given (a different base or format is refused), and its LoRA's shape.
    Anyone may continue an adapter they may see (their own, or one shared with the team)."""
    parent = visible_adapter(db, asker, config.parent)
    folder = check_folder(Path(parent.path), parent.name)
    if given.get("base") and catalogue.parse_model_id(given["base"]).model_id != parent.base_model:
        raise UserError(
            "ERR_PARENT_OTHER_BASE", name=parent.name, trained=parent.base_model, base=given["base"]
        )
    if given.get("prompt_format") and given["prompt_format"] != parent.prompt_format:
        raise UserError(
            "ERR_PARENT_OTHER_FORMAT",
            name=parent.name,
            trained=parent.prompt_format,
            given=given["prompt_format"],
        )
    role = given.get("role") or parent.role
    return parent, replace(
        config,
        base=parent.base_model,
        role=role,
        prompt_format=parent.prompt_format,
        **lora_settings(folder),
    )


def data_path(text: str, base_dir: Path | None = None) -> Path:
    """A dataset path as typed, made absolute: relative to `base_dir` (the page: the project folder,
    wherever the server was started), else to the working directory (the CLI)."""
    path = Path(text.strip()).expanduser()
    return (path if path.is_absolute() else Path(base_dir or Path.cwd()) / path).resolve()


def refuse_taken_name(db, name: str, job: Job | None) -> None:
    own = job.id if job else None
    registered = adapter_rows.get(db, name)
    # An adapter this very job registered before it was stopped is its own: resuming finishes it.
    if registered is not None and (own is None or registered.job_id != own):
        raise UserError("ERR_ADAPTER_EXISTS", name=name)
    folder = home.adapters_dir() / name
    # A folder this very job renamed into place before it was stopped is its own, to register.
    if folder.exists() and (own is None or read_metadata(folder).get("job_id") != own):
        raise UserError("ERR_FOLDER_UNREGISTERED", folder=folder)
    supervisor.reconcile(db)
    active = job_rows.active_for_name(db, name)
    if active is not None and active.id != own:
        raise UserError(job_rows.already_training(active))


def create_job(db, plan: plans.Plan, **fields) -> Job:
    """The job row and folder of a checked plan, the plan stored in it."""
    job = job_rows.create(db, **plan.job_fields(), **fields)
    job_dir = home.jobs_dir() / str(job.id)
    plans.store(plan, job_dir)
    (job_dir / "config.json").write_text(to_json(plan.config.as_dict()), encoding="utf-8")
    if plan.config.cluster == "slurm":  # what the supervisor submits (studio.supervisor.launch)
        cluster.write_script(job, plan.config, job_dir)
    job_rows.update(db, job.id, job_dir=str(job_dir), log_path=str(job_dir / "train.log"))
    return job_rows.get(db, job.id)


def submit(
    db,
    settings: dict | TrainConfig,
    *,
    progress=None,
    tokenizers=None,
    asker: Asker = LOCAL,
    base_dir=None,
    api_request: dict | None = None,
) -> Job:
    """The training page's Start (and the API's job): check, create the job, launch its detached
    trainer, which trains the stored plan. A relative dataset path is taken from the project folder,
    wherever the server was started. The job (and the adapter it makes) belongs to `asker`;
    `api_request` keeps what a job from the API was asked beyond its settings."""
    plan = check_request(
        db,
        settings,
        base_dir=base_dir or home.PROJECT_ROOT,
        progress=progress,
        tokenizers=tokenizers,
        asker=asker,
    )
    job = create_job(db, plan, owner_id=asker.id, api_request=api_request or {})
    return supervisor.launch(db, job)


def submit_form(db, form: dict, *, progress=None, tokenizers=None, asker: Asker = LOCAL) -> Job:
    """The page's Start with what its form holds (any subset of the settings): the trainer's
    defaults fill the rest, and every value is typed and range-checked as a flag would be."""
    return submit(db, form, progress=progress, tokenizers=tokenizers, asker=asker)


def submit_sweep(db, form: dict, *, progress=None, tokenizers=None, asker: Asker = LOCAL) -> Job:
    """The page's "find the learning rate": the form's job as a sweep (training.jobs.sweep) around its
    learning rate, a tenth to three times it, named after the adapter with "-lr-sweep"."""
    from training import defaults

    given = str(form.get("name") or "").strip()
    name = f"{given}-lr-sweep" if given else "lr-sweep"
    lr = float(form.get("lr") or -1)
    if lr <= 0:
        lr = defaults.for_base(catalogue.parse_model_id(form.get("base") or "builtin").model_id).lr
    settings = {**form, "name": name, "lr_sweep": form.get("lr_sweep") or sweep.around(lr)}
    return submit(db, settings, progress=progress, tokenizers=tokenizers, asker=asker)


def start_demo(db, *, tokenizers=None, asker: Asker = LOCAL) -> Job:
    """The one-click demo under the first free name: no adapter, folder or unfinished job has it."""
    supervisor.reconcile(db)
    taken = {adapter.name for adapter in adapter_rows.list_all(db)} | {
        job.adapter_name for job in job_rows.active(db)
    }
    number = 1
    while (
        f"demo-translator-{number}" in taken or (home.adapters_dir() / f"demo-translator-{number}").exists()
    ):
        number += 1
    return submit(db, replace(DEMO, name=f"demo-translator-{number}"), tokenizers=tokenizers, asker=asker)


def stored_config(job: Job, **overrides) -> dict:
    """The job's canonical settings, with `overrides` (a resume may change e.g. the device)."""
    return {**job.config, **overrides, "job_id": job.id}


def find_resumable(db, name: str, asker: Asker = LOCAL) -> Job:
    """The newest interrupted, cancelled or failed job of `name` (the CLI's --resume) that `asker`
    may resume."""
    name = check_name(name)
    supervisor.reconcile(db)
    active = job_rows.active_for_name(db, name)
    if active is not None:
        raise UserError(job_rows.already_training(active))
    job = job_rows.latest_resumable(db, name)
    if job is None or not asker.owns(job.owner_id):
        raise UserError("ERR_NOTHING_TO_RESUME", name=name)
    return job


def resume(db, job_id: int, *, changes: dict | None = None, tokenizers=None, asker: Asker = LOCAL) -> Job:
    """The page's Resume: check the job again as it will run (with `changes`, e.g. the smaller
    micro-batch an out-of-memory failure asked for), then relaunch it from its newest complete
    checkpoint."""
    supervisor.reconcile(db)
    job = owned_job(db, job_id, asker)
    if job.status not in job_rows.RESUMABLE:
        raise UserError("ERR_NOT_RESUMABLE")
    plan = check_request(
        db, stored_config(job, **(changes or {}), resume=True), job=job, tokenizers=tokenizers, asker=asker
    )
    job_dir = Path(job.job_dir or home.jobs_dir() / str(job_id))
    plans.store(plan, job_dir)
    if plan.config.cluster == "slurm":
        cluster.write_script(job, plan.config, job_dir)
    job_rows.update(
        db,
        job_id,
        status="queued",
        error=None,
        remedy=None,
        pid=None,
        heartbeat_at=time.time(),
        finished_at=None,
        devices=None,
        stop_requested_at=None,
        slurm_job_id=None,
    )
    return supervisor.launch(db, job, resume=True)


def claim(db, job: Job) -> Job:
    """The trainer takes a job: its own process is now the one the job lives or dies with."""
    job_rows.update(
        db,
        job.id,
        status="queued",
        pid=os.getpid(),
        pid_started=supervisor.process_start(os.getpid()),
        heartbeat_at=time.time(),
        finished_at=None,
        error=None,
        remedy=None,
        devices=None,  # it holds nothing until it takes its devices (training.jobs.queue)
        waiting_for=None,
    )
    return job_rows.get(db, job.id)


def owned_job(db, job_id: int, asker: Asker) -> Job:
    """The job if `asker` may see and control it; otherwise the refusal of a missing job."""
    job = job_rows.get(db, job_id)
    if job is None:
        raise UserError("ERR_NOT_FOUND_FOR_YOU", what=texts.Message("OBJECT_KINDS.job"), name=f"#{job_id}")
    asker.may_change(job.owner_id, "job", f"#{job_id}")
    return job


def cancel(db, job_id: int, asker: Asker = LOCAL) -> bool:
    """Ask the trainer to stop; it saves a checkpoint and marks the job cancelled itself."""
    stopped = supervisor.stop(db, owned_job(db, job_id, asker))
    audit(db, "stop", asker, f"job #{job_id}")
    return stopped


def get(db, job_id: int, asker: Asker = LOCAL) -> Job | None:
    """The job as it stands (a dead trainer's reads as interrupted), None when there is none that
    `asker` may see; never writes."""
    job = job_rows.get(db, job_id)
    return supervisor.as_seen(job) if job is not None and asker.owns(job.owner_id) else None


def list_recent(db, limit: int = 200, asker: Asker = LOCAL) -> list[Job]:
    """The newest jobs `asker` may see: their own (everyone's for the owner)."""
    return [supervisor.as_seen(job) for job in job_rows.list_all(db, limit=limit) if asker.owns(job.owner_id)]


def newest_preference_job(db, asker: Asker = LOCAL) -> Job | None:
    """The preference page's panel when no job is named: the newest DPO, ORPO or KTO job."""
    return newest_of(db, ("dpo", "orpo", "kto"), asker)


def newest_of(db, methods: tuple[str, ...], asker: Asker = LOCAL) -> Job | None:
    """The newest job of one of these methods `asker` may see (a page's panel when none is named)."""
    recent = list_recent(db, limit=50, asker=asker)
    return next((job for job in recent if job.config.get("method", "sft") in methods), None)


def rank_logs(job: Job) -> list[tuple[int, Path]]:
    """The logs of a distributed job's other ranks (rank 0's is the job's own log)."""
    folder = Path(job.job_dir or "")
    if not folder.is_dir():
        return []
    found = [(int(path.stem[4:]), path) for path in folder.glob("rank*.log") if path.stem[4:].isdigit()]
    return sorted(found)
