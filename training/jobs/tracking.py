"""Training metrics where teams already look: TensorBoard event files in every job's folder, and an
MLflow run when the request names a tracking URI. The registry stays the source: MLflow gets the
same per-step values as the registry's `metrics` rows while the job trains, then its checkpoint
scores, held-out evaluation and adapter files. Neither tool is needed to train: without TensorBoard
no event files are written, and an MLflow URI is refused before the job exists when MLflow is
missing or the server does not answer.

Tracking URIs: `http(s)://host:port` (an MLflow server), `sqlite:///path/mlflow.db`, or a folder
(also `file:///folder`): the folder gets `mlflow.db` and `artifacts/`, works offline, and is what
`mlflow ui --backend-store-uri sqlite:///<folder>/mlflow.db` opens. (MLflow 3 keeps its old
file-per-metric store in maintenance mode and refuses it by default, so folders get SQLite.)
"""

import importlib.util
import json
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from core import errors
from core.errors import UserError

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"  # inside the job's folder
MLFLOW_RUN_FILE = "mlflow_run.json"  # inside the job's folder: a resumed job continues its run
EXPERIMENT = "翻译机器人"
REACH_SECONDS = 5
# an MLflow server that goes away mid-training costs a few seconds per step, not minutes
CLIENT_ENVIRONMENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
TENSORBOARD_INSTALL = "pip install tensorboard==2.21.0"
MLFLOW_INSTALL = "pip install mlflow-skinny==3.18.0 sqlalchemy==2.1.9 alembic==1.20.1"


def tensorboard_installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def mlflow_installed() -> bool:
    return importlib.util.find_spec("mlflow") is not None


def tensorboard_callback(job_dir: Path, resumed_step: int | None):
    """The Trainer's own TensorBoard integration writing into the job's folder; None without
    TensorBoard. A resumed job drops the events its checkpoint did not keep (`purge_step`)."""
    if not tensorboard_installed():
        return None
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    # the steps after the checkpoint are trained again: their earlier events go
    purge = resumed_step + 1 if resumed_step is not None else None
    writer = SummaryWriter(log_dir=str(job_dir / TENSORBOARD_DIR), purge_step=purge)
    return TensorBoardCallback(tb_writer=writer)


def checked_uri(value: str, base_dir: Path | None = None) -> str:
    """The tracking URI a job will use, normalised; a UserError saying what to change when MLflow
    is missing, the form is unknown, the folder cannot be written or the server does not answer."""
    value = value.strip()
    if not value:
        return ""
    if not mlflow_installed():
        raise UserError("ERR_MLFLOW_MISSING", install=MLFLOW_INSTALL)
    if value.startswith(("http://", "https://")):
        uri = value.rstrip("/")
        _check_server(uri)
        return uri
    if "://" in value and not value.startswith(("sqlite:///", "file://")):
        raise UserError("ERR_MLFLOW_URI", uri=value)
    for module in ("sqlalchemy", "alembic"):
        if importlib.util.find_spec(module) is None:
            raise UserError("ERR_MLFLOW_MISSING", install=MLFLOW_INSTALL)
    if value.startswith("sqlite:///"):
        database = Path(value.removeprefix("sqlite:///")).expanduser()
        database = (database if database.is_absolute() else (base_dir or Path.cwd()) / database).resolve()
        _check_folder(database.parent, value)
        return f"sqlite:///{database}"
    folder = Path(value.removeprefix("file://")).expanduser()
    if not folder.is_absolute():
        folder = (base_dir or Path.cwd()) / folder
    folder = folder.resolve()
    _check_folder(folder, value)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _check_folder(folder: Path, uri: str) -> None:
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UserError("ERR_MLFLOW_FOLDER", uri=uri, folder=folder)


def _check_server(uri: str) -> None:
    """One request to MLflow's REST API, answered within seconds (MLflow's client would retry for
    minutes), before anything is created."""
    probe = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(probe, timeout=REACH_SECONDS) as reply:
            json.load(reply)
    except (OSError, ValueError) as error:
        raise UserError("ERR_MLFLOW_UNREACHABLE", uri=uri, error=errors.message_of(error)) from error


def local_folder(uri: str) -> Path | None:
    """Where a local store keeps its database and artifacts (None: a server)."""
    return Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else None


def open_command(uri: str) -> str:
    return f'mlflow ui --backend-store-uri "{uri}"' if local_folder(uri) else uri


class MlflowRun:
    """The job's MLflow run: created on its first start, continued by a resume."""

    def __init__(self, uri: str, job_dir: Path):
        os.environ.update({k: v for k, v in CLIENT_ENVIRONMENT.items() if k not in os.environ})
        from mlflow import MlflowClient

        self.uri, self.job_dir = uri, job_dir
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id = read_run(job_dir).get("run_id")

    def start(self, name: str, job_id: int, parameters: dict) -> None:
        if self.run_id:
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            folder = local_folder(self.uri)
            artifacts = (folder / "artifacts").as_uri() if folder else None
            experiment_id = self.client.create_experiment(EXPERIMENT, artifact_location=artifacts)
        run = self.client.create_run(experiment_id, run_name=name, tags={"job_id": str(job_id)})
        self.run_id = run.info.run_id
        self.log_parameters(parameters)
        record = {"uri": self.uri, "run_id": self.run_id, "experiment_id": experiment_id}
        temporary = self.job_dir / f".{MLFLOW_RUN_FILE}.tmp"
        temporary.write_text(json.dumps(record), encoding="utf-8")
        temporary.replace(self.job_dir / MLFLOW_RUN_FILE)

    def log_parameters(self, parameters: dict) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)[:6000]) for k, v in sorted(parameters.items()) if v not in (None, "")]
        for start in range(0, len(params), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def log_metrics(self, values: dict, step: int) -> None:
        import time

        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(k, float(v), stamp, step) for k, v in values.items() if isinstance(v, int | float)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, db, job_id: int, adapter, status: str) -> None:
        """The checkpoint scores, the held-out evaluation and the adapter's files, then the run's end."""
        from registry import checkpoints, evaluations

        for checkpoint in checkpoints.for_job(db, job_id):
            self.log_metrics({f"checkpoint_{k}": v for k, v in checkpoint.scores.items()}, checkpoint.step)
        if adapter is not None:
            last = int(adapter.metrics.get("steps") or 0)
            for evaluation in evaluations.for_adapter(db, adapter.id):
                self.log_metrics({f"heldout_{k}": v for k, v in evaluation.scores.items()}, last)
                base = evaluations.base_counterpart(db, evaluation)
                if base is not None:
                    self.log_metrics({f"base_heldout_{k}": v for k, v in base.scores.items()}, last)
            self.log_metrics(adapter.metrics, last)  # final_loss, train_loss, tokens_per_second, ...
            self.client.log_artifacts(self.run_id, adapter.path, "adapter")
        self.client.set_terminated(self.run_id, status)


def read_run(job_dir: Path) -> dict:
    path = job_dir / MLFLOW_RUN_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def job_logs(job_dir: str | None) -> dict:
    """Where a job's logs are, for the adapter card: the TensorBoard folder (None: no event files)
    with its command, and the MLflow run (empty: none) with the command that opens its store."""
    folder = Path(job_dir) / TENSORBOARD_DIR if job_dir else None
    has_events = folder is not None and any(folder.glob("events.out.tfevents.*"))
    run = read_run(Path(job_dir)) if job_dir else {}
    return {
        "tensorboard": folder if has_events else None,
        "tensorboard_command": f'tensorboard --logdir "{folder}"' if has_events else "",
        "mlflow": run,
        "mlflow_command": open_command(run["uri"]) if run else "",
    }
