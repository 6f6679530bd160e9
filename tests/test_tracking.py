"""Training metrics in TensorBoard event files and an MLflow store, read back with each tool's own
reader and compared with the registry; a tracking URI that cannot work is refused before the job."""

import json
import time
from pathlib import Path

import pytest

from registry import adapters, checkpoints, connect, evaluations, jobs
from tests.conftest import SAMPLE, TINY_TRAINING, run_module
from training.jobs import tracking

# a sitecustomize for the trainer's process: both tools absent, as on a machine without them
# (`import` raises ModuleNotFoundError and importlib.util.find_spec answers None)
BLOCK_TOOLS = """
import sys
for name in ("tensorboard", "tensorboardX", "mlflow"):
    sys.modules[name] = None
"""


def _train(tiny_model_dir, name: str, *extra, **popen):
    return run_module(
        "training.train", "--base", tiny_model_dir, "--data", SAMPLE, "--name", name,
        "--max-steps", "4", "--save-steps", "2", *TINY_TRAINING, *extra, **popen,
    )  # fmt: skip


def _same(read: list[tuple], registry: list[tuple], what: str) -> None:
    """The same steps, and the same values to float32 (TensorBoard keeps float32)."""
    assert [step for step, _ in read] == [step for step, _ in registry], what
    assert [value for _, value in read] == pytest.approx([value for _, value in registry], rel=1e-6), what


def _nothing_created(home: Path) -> None:
    db = connect()
    assert db["jobs"].count == 0 and db["adapters"].count == 0
    assert not (home / "jobs").exists() or not any((home / "jobs").iterdir())


@pytest.mark.slow
def test_tensorboard_and_a_local_mlflow_store_hold_the_registry_s_values_and_the_card_opens_both(
    trained_job, tiny_model_dir, monkeypatch
):
    """The session's tiny job (tests/conftest.py), trained with --mlflow-uri a folder."""
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trained_job.at_home(monkeypatch)
    store = trained_job.mlflow_store
    db = connect()
    adapter = adapters.get(db, trained_job.name)
    job = jobs.get(db, adapter.job_id)
    steps = jobs.metrics_for(db, job.id)
    assert [m["step"] for m in steps] == [1, 2, 3, 4, 5, 6]

    events = EventAccumulator(str(Path(job.job_dir) / tracking.TENSORBOARD_DIR))
    events.Reload()
    for tag, column in (("train/loss", "loss"), ("train/learning_rate", "learning_rate")):
        board = [(e.step, e.value) for e in events.Scalars(tag)]
        _same(board, [(m["step"], m[column]) for m in steps], tag)

    record = json.loads((Path(job.job_dir) / tracking.MLFLOW_RUN_FILE).read_text())
    assert record["uri"] == f"sqlite:///{store / 'mlflow.db'}"
    client = MlflowClient(record["uri"])
    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == trained_job.name
    assert run.data.params["lora_r"] == "8" and float(run.data.params["lr"]) == job.config["lr"]
    for name in ("loss", "learning_rate"):
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)]
        _same(history, [(m["step"], m[name]) for m in steps], name)
    scored = checkpoints.for_job(db, job.id)
    assert [c.step for c in scored] == [2, 4, 6]
    for metric in scored[0].scores:
        history = [
            (m.step, m.value) for m in client.get_metric_history(run.info.run_id, f"checkpoint_{metric}")
        ]
        _same(history, [(c.step, c.scores[metric]) for c in scored], metric)
    (evaluation,) = evaluations.for_adapter(db, adapter.id)
    for metric, value in evaluation.scores.items():
        assert run.data.metrics[f"heldout_{metric}"] == pytest.approx(value), metric
    assert run.data.metrics["final_loss"] == pytest.approx(adapter.metrics["final_loss"])
    files = {f.path for f in client.list_artifacts(run.info.run_id, "adapter")}
    assert "adapter/adapter_model.safetensors" in files
    saved = Path(store / "artifacts").rglob("adapter_model.safetensors")
    assert next(saved).read_bytes() == (Path(adapter.path) / "adapter_model.safetensors").read_bytes()

    shown = [block.value for block in _adapters_page(monkeypatch, tiny_model_dir).code]
    assert f'tensorboard --logdir "{Path(job.job_dir) / "tensorboard"}"' in shown
    assert f'mlflow ui --backend-store-uri "{record["uri"]}"' in shown


def _adapters_page(monkeypatch, tiny_model_dir):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import PROJECT_ROOT, use_running_server_navigation

    use_running_server_navigation(monkeypatch)
    monkeypatch.setenv("TRANSLATOR_BASE_MODEL", str(tiny_model_dir))
    app = AppTest.from_file(str(PROJECT_ROOT / "翻译机器人.py"), default_timeout=120)
    app.run()
    app.switch_page("pages/adapters.py").run()
    assert not app.exception, app.exception
    return app


def test_an_mlflow_server_that_does_not_answer_fails_the_request_in_seconds(home, tiny_model_dir):
    started = time.monotonic()
    result = _train(tiny_model_dir, "unreached", "--mlflow-uri", "http://127.0.0.1:9")
    assert time.monotonic() - started < 60
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: The MLflow server http://127.0.0.1:9 does not answer")
    assert result.stderr.strip().count("\n") == 0
    _nothing_created(home)


@pytest.mark.parametrize(
    "uri, says",
    [
        ("postgresql://db/mlflow", "Unknown MLflow tracking URI"),
        ("a-file/runs", "cannot be created or written"),  # a folder inside a file
    ],
)
def test_an_mlflow_uri_that_cannot_work_is_refused_with_what_to_give(uri, says, tmp_path):
    from core.errors import UserError

    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(UserError, match=says):
        tracking.checked_uri(uri, tmp_path)


def test_folders_and_sqlite_paths_become_one_sqlite_uri(tmp_path):
    assert tracking.checked_uri("runs", tmp_path) == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert tracking.checked_uri(f"file://{tmp_path}/x") == f"sqlite:///{tmp_path / 'x' / 'mlflow.db'}"
    assert tracking.checked_uri("sqlite:///a.db", tmp_path) == f"sqlite:///{tmp_path / 'a.db'}"
    assert tracking.checked_uri("  ") == ""


@pytest.mark.slow
def test_without_tensorboard_or_mlflow_installed_a_job_trains_and_the_card_says_what_to_install(
    home, tiny_model_dir, tmp_path, monkeypatch
):
    import os

    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_TOOLS)
    monkeypatch.setenv("PYTHONPATH", f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    refused = _train(tiny_model_dir, "bare", "--mlflow-uri", tmp_path / "runs")
    assert refused.returncode == 2 and "MLflow is not installed" in refused.stderr
    assert tracking.MLFLOW_INSTALL in refused.stderr
    _nothing_created(home)

    result = _train(tiny_model_dir, "bare")
    assert result.returncode == 0, result.stderr[-3000:]
    adapter = adapters.get(connect(), "bare")
    job_dir = Path(jobs.get(connect(), adapter.job_id).job_dir)
    assert not (job_dir / tracking.TENSORBOARD_DIR).exists()
    logs = tracking.job_logs(str(job_dir))
    assert logs["tensorboard"] is None and logs["mlflow"] == {}

    from core import texts

    captions = [c.value for c in _adapters_page(monkeypatch, tiny_model_dir).caption]
    assert texts.CARD_NO_TENSORBOARD.format(install=tracking.TENSORBOARD_INSTALL) in captions
    assert texts.CARD_NO_MLFLOW.format(install=tracking.MLFLOW_INSTALL) in captions
