"""The SQLite registry: one file shared by the Streamlit server's threads and trainer processes.

A `Database` here is bound to the thread that opened it, so callers open one per script run or per
thread with `connect()`. Every connection gets a busy timeout and foreign keys; WAL is a property of
the file and is switched on once, when the schema is created.
"""

import contextlib
import json
import sqlite3
import time
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from core import home, texts
from core.errors import UserError

BUSY_TIMEOUT_SECONDS = 30

migrations = Migrations("translator")
ONE_ACTIVE_JOB_PER_NAME = "jobs_one_active_per_name"


@migrations()
def m001_initial_schema(db: Database) -> None:
    db["jobs"].create(
        {
            "id": int,
            "adapter_name": str,
            "base_model": str,
            "role": str,
            "dataset_path": str,
            "dataset_name": str,
            "dataset_fingerprint": str,
            "config": str,  # JSON of the trainer's settings
            "status": str,  # queued running evaluating succeeded failed cancelled interrupted
            "pid": int,
            "heartbeat_at": float,
            "created_at": float,
            "started_at": float,
            "finished_at": float,
            "step": int,
            "total_steps": int,
            "epoch": float,
            "loss": float,
            "learning_rate": float,
            "tokens_per_second": float,
            "eta_seconds": float,
            "num_examples": int,
            "num_truncated": int,
            "log_path": str,
            "job_dir": str,
            "error": str,
        },
        pk="id",
        not_null={"adapter_name", "status", "created_at"},
        defaults={"status": "queued", "step": 0},
    )
    db["jobs"].create_index(["adapter_name"])
    db["jobs"].create_index(["status"])
    db["adapters"].create(
        {
            "id": int,
            "name": str,
            "role": str,
            "base_model": str,
            "prompt_format": str,
            "path": str,
            "status": str,  # dropped in m004
            "hyperparameters": str,  # JSON
            "dataset_name": str,
            "dataset_fingerprint": str,
            "num_examples": int,
            "metrics": str,  # JSON
            "size_bytes": int,
            "job_id": int,
            "created_at": float,
        },
        pk="id",
        not_null={"name", "base_model", "path", "status", "created_at"},
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["adapters"].create_index(["name"], unique=True)
    db["metrics"].create(
        {
            "id": int,
            "job_id": int,
            "step": int,
            "epoch": float,
            "loss": float,
            "learning_rate": float,
            "grad_norm": float,
            "tokens_per_second": float,
            "created_at": float,
        },
        pk="id",
        not_null={"job_id", "step"},
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["metrics"].create_index(["job_id", "step"])
    db["conversations"].create(
        {
            "id": int,
            "title": str,
            "base_model": str,
            "adapter": str,
            "role": str,
            "created_at": float,
            "updated_at": float,
        },
        pk="id",
        not_null={"title", "created_at"},
    )
    db["messages"].create(
        {
            "id": int,
            "conversation_id": int,
            "role": str,  # user / assistant
            "content": str,
            "base_model": str,
            "adapter": str,
            "chat_role": str,
            "settings": str,  # JSON of the generation settings that produced it
            "created_at": float,
        },
        pk="id",
        not_null={"conversation_id", "role", "content", "created_at"},
        foreign_keys=[("conversation_id", "conversations", "id")],
    )
    db["messages"].create_index(["conversation_id"])
    db["roles"].create(
        {
            "name": str,
            "title": str,
            "system_prompt": str,
            "instruction": str,
            "decoding": str,  # JSON
            "uses_history": int,
            "created_at": float,
        },
        pk="name",
        not_null={"created_at"},
    )


@migrations()
def m002_evaluations(db: Database) -> None:
    db["evaluations"].create(
        {
            "id": int,
            "adapter_id": int,  # NULL: the base model alone
            "adapter_name": str,
            "base_model": str,
            "role": str,
            "kind": str,  # translation (BLEU/chrF) or loss (reference loss/perplexity)
            "dataset_name": str,
            "dataset_fingerprint": str,
            "num_examples": int,
            "scores": str,  # JSON
            "signature": str,  # sacrebleu signatures, or how the loss was computed
            "predictions_path": str,
            "created_at": float,
        },
        pk="id",
        not_null={"base_model", "kind", "dataset_fingerprint", "num_examples", "scores", "created_at"},
        foreign_keys=[("adapter_id", "adapters", "id")],
    )
    db["evaluations"].create_index(["adapter_id", "dataset_fingerprint"])


@migrations()
def m003_process_identity(db: Database) -> None:
    # A pid alone is reused by the system; with its start time it names one process for good.
    db["jobs"].add_column("pid_started", int)


@migrations()
def m004_no_adapter_status(db: Database) -> None:
    # A row exists only once its folder is complete, so an adapter's status was always "ready".
    db.execute("alter table adapters drop column status")


@migrations()
def m005_role_format_and_metric(db: Database) -> None:
    db["roles"].add_column("prompt_format", str)  # empty: the base model's own format
    db["roles"].add_column("metric", str)  # translation (BLEU/chrF) or loss


@migrations()
def m006_preferences(db: Database) -> None:
    # What a person chose for the whole studio (the interface language), kept across closed tabs.
    db["preferences"].create({"key": str, "value": str}, pk="key")


@migrations()
def m007_blind_votes(db: Database) -> None:
    # One blind A/B judgement. The pair is stored in name order (first < second; "" is the base
    # alone) whatever order the answers were shown in, so the votes of a pair add up.
    db["votes"].create(
        {
            "id": int,
            "base_model": str,
            "first": str,
            "second": str,
            "winner": str,  # first | second | tie
            "prompt": str,
            "first_answer": str,
            "second_answer": str,
            "created_at": float,
        },
        pk="id",
        not_null={"base_model", "first", "second", "winner", "created_at"},
    )
    db["votes"].create_index(["base_model", "first", "second"])


@migrations()
def m008_checkpoint_scores(db: Database) -> None:
    # Each saved checkpoint of a job scored on the job's held-out examples, so the best one (not
    # just the last) is published and the others can still be published later.
    db["checkpoint_scores"].create(
        {
            "id": int,
            "job_id": int,
            "step": int,
            "epoch": float,
            "kind": str,  # translation | loss (the role's metric)
            "scores": str,  # JSON: bleu, chrf | loss, perplexity
            "num_examples": int,
            "signature": str,
            "weights_path": str,  # the checkpoint's adapter weights, kept after checkpoint rotation
            "created_at": float,
        },
        pk="id",
        not_null={"job_id", "step", "kind", "scores", "created_at"},
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["checkpoint_scores"].create_index(["job_id", "step"], unique=True)


@migrations()
def m009_serving_tasks(db: Database) -> None:
    # Detached processes that take an adapter out of the studio: exports (merge, GGUF, hub push)
    # and API servers. Like a training job, each re-attaches after a reload and ends honestly.
    db["serving_tasks"].create(
        {
            "id": int,
            "kind": str,  # server | merge | gguf | gguf-lora | push
            "adapter_name": str,  # empty for a server of a base model
            "settings": str,  # JSON: what the task was asked to do
            "status": str,  # registry.runs.STATUSES (until m012: starting for queued)
            "stage": str,  # what a running export is doing now (load, merge, write, convert, upload)
            "pid": int,
            "pid_started": int,
            "log_path": str,
            "result": str,  # JSON: the output's path, a URL, a command
            "error": str,
            "created_at": float,
            "finished_at": float,
        },
        pk="id",
        not_null={"kind", "status", "created_at"},
    )


@migrations()
def m010_job_devices(db: Database) -> None:
    # Several jobs on several GPUs: which devices a job holds ("0,1", or "cpu"), and while it
    # waits for them, why.
    db["jobs"].add_column("devices", str)
    db["jobs"].add_column("waiting_for", str)


@migrations()
def m011_one_active_job_per_name(db: Database) -> None:
    # One active job per adapter name, held by the registry itself: every path (the page, the
    # command line, a resume) is refused at the moment it claims the name, not after training.
    # Older registries could hold two; the older ones were never going to publish.
    db.execute(
        "update jobs set status = 'interrupted', error = 'Another job of the same name was active.' "
        "where status in ('queued', 'running', 'evaluating') and id not in "
        "(select max(id) from jobs where status in ('queued', 'running', 'evaluating') group by adapter_name)"
    )
    db.execute(
        f"create unique index {ONE_ACTIVE_JOB_PER_NAME} on jobs(adapter_name) "
        "where status in ('queued', 'running', 'evaluating')"
    )


@migrations()
def m012_one_status_vocabulary(db: Database) -> None:
    # Jobs and serving tasks are kinds of run with one status vocabulary (registry.runs): a task
    # that has not started yet is queued, like a job.
    db.execute("update serving_tasks set status = 'queued' where status = 'starting'")


@migrations()
def m013_preference_tuning(db: Database) -> None:
    # A blind vote keeps what rebuilds the exact prompt each side answered: the role (system prompt,
    # instruction) and the prompt format, so votes become preference pairs.
    db["votes"].add_column("first_context", str)  # JSON: {"role": Role.as_dict(), "prompt_format": str}
    db["votes"].add_column("second_context", str)
    # Lineage: the adapter a preference (or continued) job started from, the kind of training, and
    # where its data came from. parent_id is cleared when the parent is deleted; the name stays.
    db["adapters"].add_column("parent_id", int)
    db["adapters"].add_column("parent_name", str)
    db["adapters"].add_column("method", str)  # sft | dpo | orpo | kto (NULL: sft, before m013)
    db["adapters"].add_column("data_source", str)  # JSON: votes up to id N, a file, self-generated
    db["adapters"].create_index(["parent_id"])
    # What a preference job logs besides the loss: reward accuracy and margins per step.
    db["metrics"].add_column("extra", str)  # JSON


@migrations()
def m014_evaluation_decoding(db: Database) -> None:
    # How the predictions were decoded: "greedy" or "beams=N,length_penalty=P" (NULL: greedy, as
    # every evaluation before beam search was). Scores are compared only between equal decodings.
    db["evaluations"].add_column("decoding", str)


@migrations()
def m015_learning_rate_sweeps(db: Database) -> None:
    # A learning-rate sweep job trains the same start a few steps at each rate and scores each on
    # its held-out examples; one row per (job, rate), so a resumed sweep skips the rates it has.
    db["sweep_points"].create(
        {
            "id": int,
            "job_id": int,
            "lr": float,
            "steps": int,
            "train_loss": float,
            "kind": str,  # translation | loss (the role's metric)
            "scores": str,  # JSON: bleu, chrf | loss, perplexity
            "num_examples": int,
            "seconds": float,
            "created_at": float,
        },
        pk="id",
        not_null={"job_id", "lr", "kind", "scores", "created_at"},
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["sweep_points"].create_index(["job_id", "lr"], unique=True)


@migrations()
def m016_job_remedy(db: Database) -> None:
    # A job that failed for a reason a resume can fix (out of memory: a smaller micro-batch) keeps
    # the settings that resume should change, so the page offers it in one click.
    db["jobs"].add_column("remedy", str)  # JSON: {"micro_batch": 2} | {"gradient_checkpointing": "on"}


@migrations()
def m017_messages_as_codes(db: Database) -> None:
    # What a run's process writes for people (an error, why a job waits) is kept as a text's code
    # and fields (JSON: core.texts.Message), so each reader sees it in their own language; the text
    # column keeps the writer's rendering, and rows from before keep only that.
    db["jobs"].add_column("error_message", str)
    db["jobs"].add_column("waiting_for_message", str)
    db["serving_tasks"].add_column("error_message", str)


@migrations()
def m018_team_mode(db: Database) -> None:
    # Accounts for team mode. Every object a person makes records who made it (owner_id); a row
    # from before team mode (owner_id NULL) belongs to the studio's owner, so an upgraded registry
    # loses nothing and starting without --team shows everything again.
    db["accounts"].create(
        {
            "id": int,
            "name": str,
            "role": str,  # owner | member | viewer
            "password_hash": str,  # argon2id (core's password hasher); NULL until a setup code is used
            "email": str,  # matched against the identity provider's verified email
            "max_jobs": int,  # concurrent jobs this account may have running (NULL: no limit)
            "created_at": float,
            "disabled_at": float,
        },
        pk="id",
        not_null={"name", "role", "created_at"},
    )
    db["accounts"].create_index(["name"], unique=True)
    db["setup_codes"].create(
        {
            "id": int,
            "account_id": int,
            "code_hash": str,  # argon2id of the code, which is shown once
            "created_at": float,
            "expires_at": float,
            "used_at": float,
        },
        pk="id",
        not_null={"account_id", "code_hash", "created_at", "expires_at"},
        foreign_keys=[("account_id", "accounts", "id")],
    )
    db["sessions"].create(
        {
            "id": int,
            "account_id": int,
            "token_hash": str,  # SHA-256 of a 256-bit random token; the browser holds the token
            "how": str,  # password | oidc
            "address": str,
            "created_at": float,
            "expires_at": float,
            "ended_at": float,
        },
        pk="id",
        not_null={"account_id", "token_hash", "created_at", "expires_at"},
        foreign_keys=[("account_id", "accounts", "id")],
    )
    db["sessions"].create_index(["token_hash"], unique=True)
    db["api_keys"].create(
        {
            "id": int,
            "account_id": int,
            "label": str,
            "prefix": str,  # the key's first characters, to recognise it in a list
            "key_hash": str,  # SHA-256 of a 256-bit random key, which is shown once
            "created_at": float,
            "last_used_at": float,
            "revoked_at": float,
        },
        pk="id",
        not_null={"account_id", "prefix", "key_hash", "created_at"},
        foreign_keys=[("account_id", "accounts", "id")],
    )
    db["api_keys"].create_index(["key_hash"], unique=True)
    db["login_attempts"].create(
        {"id": int, "name": str, "address": str, "succeeded": int, "at": float},
        pk="id",
        not_null={"name", "address", "succeeded", "at"},
    )
    db["login_attempts"].create_index(["name", "at"])
    db["login_attempts"].create_index(["address", "at"])
    db["audit"].create(
        {
            "id": int,
            "at": float,
            "account_id": int,
            "account_name": str,
            "action": str,  # login, login_failed, logout, key_created, key_revoked, delete, export, push, ...
            "object": str,
            "address": str,
        },
        pk="id",
        not_null={"at", "action"},
    )
    db["audit"].create_index(["at"])
    for table in ("conversations", "adapters", "jobs", "serving_tasks", "votes"):
        db[table].add_column("owner_id", int)
        db[table].create_index(["owner_id"])
    db["adapters"].add_column("shared", int, not_null_default=0)


@migrations()
def m019_slurm_jobs(db: Database) -> None:
    # A job handed to a Slurm cluster: Slurm's job id (its state is read from Slurm, never copied),
    # and when the studio asked it to stop (a Stop is a cancel; any other end Slurm forces on the
    # job, a time limit or a preemption, leaves it interrupted and resumable).
    db["jobs"].add_column("slurm_job_id", int)
    db["jobs"].add_column("stop_requested_at", float)


@migrations()
def m020_files(db: Database) -> None:
    # Data uploaded through the API's /v1/files, kept whole under the home's files/ folder.
    db["files"].create(
        {
            "id": str,
            "filename": str,
            "purpose": str,
            "bytes": int,
            "kind": str,
            "records": int,
            "path": str,
            "created_at": float,
            "owner_id": int,
        },
        pk="id",
        not_null={"filename", "purpose", "bytes", "kind", "path", "created_at"},
    )
    db["files"].create_index(["owner_id"])
    db["files"].create_index(["path"])
    # what a job started through /v1/fine_tuning/jobs was asked beyond its settings: its files' ids,
    # suffix and metadata, answered back as OpenAI's job object does
    db["jobs"].add_column("api_request", str)


def connect(path: Path | None = None) -> Database:
    """Open the registry (creating or upgrading its schema) for use on the calling thread.

    A file that is not a SQLite database, or one this process may not write, is refused with a
    message saying what to do, never a raw sqlite3 error."""
    path = Path(path) if path else home.registry_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS)
        conn.execute("PRAGMA foreign_keys = ON")
        db = Database(conn)
        if migrations.pending(db):
            with _migration_lock(path):
                if migrations.pending(db):
                    db.enable_wal()
                    migrations.apply(db)
        # Rewriting the schema version with itself needs write access: a read-only file or folder is
        # found here, at the door, instead of at the first write of some later action.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute(f"PRAGMA user_version = {int(version)}")
    except sqlite3.DatabaseError as error:
        raise UserError(_explain(path, error)) from error
    except PermissionError as error:
        raise UserError(
            "ERR_REGISTRY_PERMISSION", path=path, error=error.strerror, folder=path.parent
        ) from error
    return db


def _explain(path: Path, error: sqlite3.DatabaseError) -> texts.Message:
    text = str(error)
    if "not a database" in text or "malformed" in text:
        code = "ERR_REGISTRY_NOT_DB"
    elif "readonly" in text or "read-only" in text or "unable to open" in text:
        code = "ERR_REGISTRY_READ_ONLY"
    else:
        code = "ERR_REGISTRY_UNUSABLE"
    return texts.Message(code, {"path": path, "error": text})


@contextlib.contextmanager
def _migration_lock(path: Path):
    """Two processes opening a new registry at once must not both create the tables."""
    try:
        import fcntl
    except ImportError:  # Windows: sqlite's own locking is the fallback
        yield
        return
    with open(path.with_name(path.name + ".lock"), "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def now() -> float:
    return time.time()


def to_json(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def from_json(text: str | None, default=None):
    if not text:
        return default
    return json.loads(text)
