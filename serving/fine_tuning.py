"""OpenAI's Files and Fine-tuning APIs over the studio's own files and jobs.

    POST   /v1/files                                  upload training data (multipart, purpose fine-tune)
    GET    /v1/files, /v1/files/{id}, /v1/files/{id}/content      list, retrieve, read
    DELETE /v1/files/{id}
    POST   /v1/fine_tuning/jobs                       start a job (supervised or DPO)
    GET    /v1/fine_tuning/jobs, /v1/fine_tuning/jobs/{id}        list (paginated), retrieve
    POST   /v1/fine_tuning/jobs/{id}/cancel, .../resume
    GET    /v1/fine_tuning/jobs/{id}/events, .../checkpoints
    DELETE /v1/models/{model}                         delete an adapter

Nothing here trains, checks or stores on its own: a file is kept by training.jobs.files (checked by
the trainer's own parsers) and a job is `training.jobs.lifecycle.submit`, the page's Start, so the
same checks run before a job exists and the same trainer, queue, cancel and resume follow. A job
from the page is listed here too (`ftjob-<id>` is the studio's job id), and a job from here is on
the training page. `fine_tuned_model` is the published adapter's name, served by this very server.
Replies read in English whatever the studio's language, as OpenAI's clients expect.
"""

import functools
import re
import secrets
from dataclasses import dataclass

from core import texts
from core.errors import UserError
from engine import catalogue
from registry import adapters as adapter_rows
from registry import checkpoints as checkpoint_rows
from registry import connect
from registry import jobs as job_rows
from registry.jobs import Job
from serving import protocol
from studio import adapters as studio_adapters
from studio.accounts import Asker
from training.jobs import files, lifecycle

JOB_PREFIX = "ftjob-"
STATUS = {  # the studio's job status → OpenAI's
    "queued": "queued",
    "running": "running",
    "evaluating": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "interrupted": "failed",  # resumable: POST .../resume
    "cancelled": "cancelled",
}
METHODS = {"supervised": "sft", "dpo": "dpo"}
DEFAULT_ROLE = "assistant"
MAX_LIMIT = 100


class NotFound(Exception):
    """What a request names does not exist for the asker: answered 404 (`param` names the field)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message, self.param = message, param


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


def in_english(work):
    """A request's work, with every message (rows' errors included) in English."""

    @functools.wraps(work)
    def english(*args, **kwargs):
        with texts.in_language("en"):
            return work(*args, **kwargs)

    return english


# --- files -----------------------------------------------------------------------------------------


@in_english
def upload(filename: str, data: bytes, purpose: str, asker: Asker) -> protocol.FileObject:
    try:
        return file_object(files.upload(connect(), filename, data, purpose, asker))
    except UserError as error:
        param = "purpose" if error.message and error.message.code == "ERR_FILE_PURPOSE" else "file"
        raise BadRequest(str(error), param=param, code="invalid_file") from None


@in_english
def list_files(asker: Asker, *, after: str | None, limit: int, purpose: str | None) -> protocol.FileList:
    found = [file_object(f) for f in files.list_visible(connect(), asker, purpose)]
    data, has_more = _page(found, after, limit)
    return protocol.FileList(data=data, has_more=has_more, **_ends(data))


@in_english
def get_file(file_id: str, asker: Asker) -> protocol.FileObject:
    return file_object(_file(file_id, asker))


@in_english
def file_content(file_id: str, asker: Asker) -> bytes:
    _file(file_id, asker)
    return files.content(connect(), file_id, asker)


@in_english
def delete_file(file_id: str, asker: Asker) -> protocol.Deleted:
    _file(file_id, asker)
    try:
        files.delete(connect(), file_id, asker)
    except UserError as error:
        raise BadRequest(str(error), param="file_id", code="file_in_use") from None
    return protocol.Deleted(id=file_id, object="file", deleted=True)


def _file(file_id: str, asker: Asker, param: str | None = None):
    """The file named in a route's path (404 when there is none for the asker), or in a job's
    `param` field (then a 400 naming that field)."""
    try:
        return files.get(connect(), file_id, asker)
    except UserError:
        message = f"No such File object: {file_id}."
        if param is not None:
            raise BadRequest(
                f"{message} Upload it first (POST /v1/files).", param, "file_not_found"
            ) from None
        raise NotFound(message) from None


def file_object(found) -> protocol.FileObject:
    return protocol.FileObject(
        id=found.id, bytes=found.bytes, created_at=int(found.created_at), filename=found.filename
    )


# --- jobs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hyper:
    """What a request's hyperparameters ask of the studio's settings."""

    n_epochs: int | str | None = None
    batch_size: int | str | None = None
    learning_rate_multiplier: float | str | None = None
    beta: float | str | None = None

    def settings(self) -> dict:
        given = {k: v for k, v in self.__dict__.items() if v not in (None, "auto")}
        settings = {}
        if "n_epochs" in given:
            settings["epochs"] = float(given["n_epochs"])
        if "batch_size" in given:  # OpenAI's batch is a step's examples: no accumulation on top
            settings.update(batch_size=given["batch_size"], grad_accum=1)
        if "learning_rate_multiplier" in given:
            settings["lr_scale"] = float(given["learning_rate_multiplier"])
        if "beta" in given:
            settings["beta"] = float(given["beta"])
        return settings


@in_english
def create_job(body: protocol.FineTuningJobRequest, asker: Asker) -> protocol.FineTuningJob:
    db = connect()
    method = body.method.type if body.method else "supervised"
    chosen = getattr(body.method, method, None) if body.method else None
    given = (chosen.hyperparameters if chosen else None) or body.hyperparameters
    hyper = Hyper(**given.model_dump(include=set(Hyper.__dataclass_fields__))) if given else Hyper()
    training = _file(body.training_file, asker, "training_file")
    validation = _file(body.validation_file, asker, "validation_file") if body.validation_file else None
    settings = {
        "data": training.path,
        "name": adapter_name(body.suffix),
        "method": METHODS[method],
        **hyper.settings(),
    }
    if validation is not None:
        settings.update(validation_data=validation.path, holdout=0.0)
    if body.seed is not None:
        settings["seed"] = body.seed
    parent = adapter_rows.get(db, body.model)
    if parent is not None and asker.may_see_adapter(parent):
        settings["parent"] = parent.name
        if body.role:
            settings["role"] = body.role
    else:
        _known_base(body.model)
        settings.update(base=body.model, role=body.role or DEFAULT_ROLE)
    request = {
        "training_file": training.id,
        "validation_file": validation.id if validation else None,
        "suffix": body.suffix,
        "metadata": body.metadata,
        "model": body.model,
    }
    try:
        job = lifecycle.submit(db, settings, asker=asker, api_request=request)
    except UserError as error:
        raise BadRequest(str(error), param=_param_of(error)) from None
    return job_object(db, job)


def adapter_name(suffix: str | None) -> str:
    """`{suffix}-{6 hex}`, or `ft-{8 hex}`: unique, and within the studio's name rules."""
    cleaned = re.sub(r"[^\w.-]+", "-", suffix or "").strip("-._")[:57]
    return f"{cleaned}-{secrets.token_hex(3)}" if cleaned else f"ft-{secrets.token_hex(4)}"


def _known_base(model: str) -> None:
    try:
        catalogue.parse_model_id(model)
    except UserError as error:
        raise NotFound(
            f"The model `{model}` does not exist here: name a base model the studio knows or one of "
            f"your adapters. {error}",
            "model",
        ) from None


def _param_of(error: UserError) -> str | None:
    code = error.message.code if error.message else ""
    if code.startswith(("ERR_PAIRS", "ERR_METHOD_NEEDS_PAIRS", "ERR_ALL_TRUNCATED", "ERR_EXAMPLE")):
        return "training_file"
    if code.startswith(("ERR_PARENT", "ERR_MODEL", "ERR_BASE")):
        return "model"
    return None


@in_english
def list_jobs(asker: Asker, *, after: str | None, limit: int) -> protocol.JobList:
    db = connect()
    found = [job_object(db, job) for job in lifecycle.list_recent(db, limit=10_000, asker=asker)]
    data, has_more = _page(found, after, limit)
    return protocol.JobList(data=data, has_more=has_more, **_ends(data))


@in_english
def get_job(job_id: str, asker: Asker) -> protocol.FineTuningJob:
    db = connect()
    return job_object(db, _job(db, job_id, asker))


@in_english
def cancel_job(job_id: str, asker: Asker) -> protocol.FineTuningJob:
    db = connect()
    job = _job(db, job_id, asker)
    if job.status not in job_rows.ACTIVE:
        raise BadRequest(
            f"Job {job_id} has already ended ({STATUS[job.status]}): there is nothing to cancel.",
            code="job_not_running",
        )
    lifecycle.cancel(db, job.id, asker)
    return job_object(db, lifecycle.get(db, job.id, asker))


@in_english
def resume_job(job_id: str, asker: Asker) -> protocol.FineTuningJob:
    db = connect()
    job = _job(db, job_id, asker)
    try:
        resumed = lifecycle.resume(db, job.id, asker=asker)
    except UserError as error:
        raise BadRequest(str(error), code="job_not_resumable") from None
    return job_object(db, resumed)


@in_english
def list_events(job_id: str, asker: Asker, *, after: str | None, limit: int) -> protocol.EventList:
    db = connect()
    events = list(reversed(job_events(db, _job(db, job_id, asker))))  # newest first, as OpenAI's
    data, has_more = _page(events, after, limit)
    return protocol.EventList(data=data, has_more=has_more, **_ends(data))


@in_english
def list_checkpoints(job_id: str, asker: Asker, *, after: str | None, limit: int) -> protocol.CheckpointList:
    db = connect()
    job = _job(db, job_id, asker)
    losses = {
        row["step"]: row["loss"] for row in job_rows.metrics_for(db, job.id) if row.get("loss") is not None
    }
    found = [
        protocol.JobCheckpoint(
            id=f"ftckpt-{job.id}-{score.step}",
            created_at=int(score.created_at),
            fine_tuned_model_checkpoint=f"{job.adapter_name}@step-{score.step}",
            fine_tuning_job_id=job_ref(job),
            step_number=score.step,
            metrics=_checkpoint_metrics(score, losses),
        )
        for score in reversed(checkpoint_rows.for_job(db, job.id))
    ]
    data, has_more = _page(found, after, limit)
    return protocol.CheckpointList(data=data, has_more=has_more, **_ends(data))


def _checkpoint_metrics(score, losses: dict) -> dict[str, float]:
    metrics = {"step": float(score.step)}
    nearest = [step for step in losses if step <= score.step]
    if nearest:
        metrics["train_loss"] = float(losses[max(nearest)])
    named = {"loss": "valid_loss", "perplexity": "valid_perplexity"}
    for key, value in score.scores.items():
        if isinstance(value, int | float):
            metrics[named.get(key, f"valid_{key}")] = float(value)
    if "valid_loss" in metrics:  # scored on every held-out example, which OpenAI calls the full loss
        metrics["full_valid_loss"] = metrics["valid_loss"]
    return metrics


@in_english
def get_model(model: str, asker: Asker, served: list[str]) -> protocol.ModelCard:
    if model not in served:
        raise NotFound(
            f"The model `{model}` does not exist here. Models served: {', '.join(served)}.", "model"
        )
    adapter = adapter_rows.get(connect(), model)
    created = int(adapter.created_at) if adapter is not None else 0
    return protocol.ModelCard(id=model, created=created)


@in_english
def delete_model(model: str, asker: Asker) -> protocol.Deleted:
    db = connect()
    adapter = adapter_rows.get(db, model)
    if adapter is None or not asker.may_see_adapter(adapter):
        raise NotFound(f"The model `{model}` does not exist here.", "model")
    try:
        studio_adapters.delete(db, model, asker)
    except UserError as error:
        raise BadRequest(str(error), param="model", code="model_in_use") from None
    return protocol.Deleted(id=model, object="model", deleted=True)


def job_ref(job: Job) -> str:
    return f"{JOB_PREFIX}{job.id}"


def _job(db, job_id: str, asker: Asker) -> Job:
    number = job_id.removeprefix(JOB_PREFIX)
    job = lifecycle.get(db, int(number), asker) if number.isdigit() and len(number) < 19 else None
    if job is None:
        raise NotFound(f"No fine-tuning job with id {job_id}.", "fine_tuning_job_id")
    return job


def job_object(db, job: Job) -> protocol.FineTuningJob:
    """A studio job as OpenAI's `fine_tuning.job` (a page's job too: its file is named by its name)."""
    config, asked = job.config, job.api_request or {}
    training = asked.get("training_file") or _file_id_of(db, job.dataset_path) or job.dataset_name or ""
    status = STATUS.get(job.status, "failed")
    error = None
    if job.status in ("failed", "interrupted"):
        code = "interrupted" if job.status == "interrupted" else "training_failed"
        message = job.error or "The job ended without saying why; read its log on the training page."
        if job.status == "interrupted":
            message += f" It can be resumed: POST /v1/fine_tuning/jobs/{job_ref(job)}/resume."
        error = protocol.JobError(code=code, message=message, param=None)
    published = job.status == "succeeded" and adapter_rows.get(db, job.adapter_name) is not None
    method = {"sft": "supervised"}.get(config.get("method", "sft"), config.get("method", "sft"))
    running = job.status in ("running", "evaluating")
    return protocol.FineTuningJob(
        id=job_ref(job),
        created_at=int(job.created_at),
        finished_at=int(job.finished_at) if job.finished_at and status not in ("queued", "running") else None,
        model=asked.get("model") or config.get("parent") or job.base_model or "",
        fine_tuned_model=job.adapter_name if published else None,
        status=status,
        error=error,
        hyperparameters=protocol.JobHyperparameters(
            n_epochs=float(config.get("epochs", -1)),
            batch_size=int(config.get("batch_size", 1)) * int(config.get("grad_accum", 1)),
            learning_rate_multiplier=float(config.get("lr_scale", 1.0)),
            beta=float(config["beta"]) if method == "dpo" and "beta" in config else None,
        ),
        method=protocol.JobMethod(type=method),
        training_file=training,
        validation_file=asked.get("validation_file"),
        result_files=[],
        seed=int(config.get("seed", 0)),
        trained_tokens=None,
        estimated_finish=int(job.heartbeat_at + job.eta_seconds)
        if running and job.eta_seconds and job.heartbeat_at
        else None,
        user_provided_suffix=asked.get("suffix"),
        metadata=asked.get("metadata"),
    )


def _file_id_of(db, path: str | None) -> str | None:
    found = files.of_path(db, path)
    return found.id if found else None


def job_events(db, job: Job) -> list[protocol.JobEvent]:
    """What happened to a job, oldest first: created, started, each logged step, each scored
    checkpoint, the end (with the adapter it published)."""
    ref = job_ref(job)

    def event(key, at, message, *, level="info", data=None, kind="message"):
        return protocol.JobEvent(
            id=f"ftevent-{job.id}-{key}",
            created_at=int(at),
            level=level,
            message=message,
            data=data,
            type=kind,
        )

    events = [event("created", job.created_at, f"Created fine-tuning job: {ref}")]
    if job.started_at:
        events.append(event("started", job.started_at, "Fine-tuning job started"))
    timed = []
    for row in job_rows.metrics_for(db, job.id):
        data = {"step": row["step"], "train_loss": row.get("loss"), "total_steps": job.total_steps}
        if row.get("learning_rate") is not None:
            data["learning_rate"] = row["learning_rate"]
        loss = f"{row['loss']:.4f}" if row.get("loss") is not None else "?"
        total = f"/{job.total_steps}" if job.total_steps else ""
        message = f"Step {row['step']}{total}: training loss={loss}"
        timed.append(event(f"m{row['id']}", row["created_at"], message, data=data, kind="metrics"))
    for score in checkpoint_rows.for_job(db, job.id):
        shown = ", ".join(f"{k}={v:.4g}" for k, v in score.scores.items() if isinstance(v, int | float))
        message = f"Checkpoint at step {score.step} scored on held-out examples: {shown}"
        timed.append(
            event(f"c{score.id}", score.created_at, message, data={"step": score.step, **score.scores})
        )
    events += sorted(timed, key=lambda e: e.created_at)
    if job.finished_at and job.status not in job_rows.ACTIVE:
        events += _end_events(db, job, event)
    return events


def _end_events(db, job: Job, event) -> list[protocol.JobEvent]:
    at = job.finished_at
    if job.status == "succeeded":
        ended = [event("end", at, "The job has successfully completed")]
        if adapter_rows.get(db, job.adapter_name) is not None:
            ended.insert(0, event("model", at, f"New fine-tuned model created: {job.adapter_name}"))
        return ended
    if job.status == "cancelled":
        return [event("end", at, "The job was cancelled; its last checkpoint is kept for a resume")]
    why = job.error or "no reason was recorded"
    return [event("end", at, f"The job {job.status}: {why}", level="error")]


def _page(items: list, after: str | None, limit: int) -> tuple[list, bool]:
    """The items after the one whose id is `after` (all when it is not given), at most `limit`."""
    start = 0
    if after:
        ids = [item.id for item in items]
        if after not in ids:
            raise BadRequest(f"`after` names no object of this list: {after}.", param="after")
        start = ids.index(after) + 1
    chosen = items[start : start + limit]
    return chosen, start + limit < len(items)


def _ends(data: list) -> dict:
    return {"first_id": data[0].id if data else None, "last_id": data[-1].id if data else None}
