import multiprocessing
import sqlite3
import subprocess
import sys
import threading

import pytest

from core.errors import UserError
from core.names import check_name
from registry import adapters, connect, conversations, jobs
from studio import adapters as studio_adapters
from tests.conftest import lora_folder


def test_schema_is_created_with_wal_foreign_keys_and_recorded_migrations(db, home):
    tables = {
        "adapters",
        "jobs",
        "metrics",
        "conversations",
        "messages",
        "roles",
        "preferences",
        "serving_tasks",
    }
    assert tables <= set(db.table_names())
    assert db.journal_mode == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    applied = [row["name"] for row in db["_sqlite_migrations"].rows]
    assert applied == [
        "m001_initial_schema",
        "m002_evaluations",
        "m003_process_identity",
        "m004_no_adapter_status",
        "m005_role_format_and_metric",
        "m006_preferences",
        "m007_blind_votes",
        "m008_checkpoint_scores",
        "m009_serving_tasks",
        "m010_job_devices",
        "m011_one_active_job_per_name",
        "m012_one_status_vocabulary",
        "m013_preference_tuning",
        "m014_evaluation_decoding",
        "m015_learning_rate_sweeps",
        "m016_job_remedy",
        "m017_messages_as_codes",
        "m018_team_mode",
        "m019_slurm_jobs",
        "m020_files",
    ]
    again = connect()  # reopening applies nothing twice
    assert [row["name"] for row in again["_sqlite_migrations"].rows] == applied


def _insert_metrics(job_id: int, count: int) -> None:
    db = connect()
    for step in range(count):
        jobs.record_metric(db, job_id, step, loss=1.0)
        jobs.heartbeat(db, job_id, step=step)


@pytest.mark.slow
def test_threads_and_processes_write_at_the_same_time(db):
    job = jobs.create(db, adapter_name="x", config={})
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_insert_metrics, args=(job.id, 40)) for _ in range(2)]
    threads = [threading.Thread(target=_insert_metrics, args=(job.id, 40)) for _ in range(2)]
    for worker in [*processes, *threads]:
        worker.start()
    for worker in [*processes, *threads]:
        worker.join(timeout=120)
    assert all(process.exitcode == 0 for process in processes)
    assert db["metrics"].count == 160


def test_every_thread_opens_its_own_connection_with_the_same_settings(db):
    """Streamlit runs each session in its own thread: each must get foreign keys and a busy
    timeout, and its writes must be seen by the others."""
    seen = []

    def work():
        own = connect()
        seen.append(
            (
                own.execute("PRAGMA foreign_keys").fetchone()[0],
                own.execute("PRAGMA busy_timeout").fetchone()[0],
                own.journal_mode,
            )
        )
        jobs.create(own, adapter_name="from-a-thread", config={})

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [(1, 30_000, "wal")]
    assert [job.adapter_name for job in jobs.list_all(db)] == ["from-a-thread"]
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        with db.conn:
            db["metrics"].insert({"job_id": 999, "step": 1, "created_at": 0.0})


def test_a_registry_that_is_not_sqlite_or_is_read_only_gets_a_clear_message(home, monkeypatch):
    home.mkdir(parents=True, exist_ok=True)
    (home / "registry.db").write_bytes(b"these are notes, not a database" * 100)
    with pytest.raises(UserError, match="is not a registry database.*Move it away"):
        connect()
    (home / "registry.db").unlink()
    connect()  # a real registry, then opened read-only as on a read-only mount
    real_connect = sqlite3.connect
    monkeypatch.setattr(
        sqlite3, "connect", lambda path, **kw: real_connect(f"file:{path}?mode=ro", uri=True, **kw)
    )
    with pytest.raises(UserError, match="read-only.*give this user write access"):
        connect()


def test_adapter_rows_register_rename_and_delete_with_their_folders(db, home):
    folder = lora_folder(home / "adapters" / "first")
    row = studio_adapters.register(
        db,
        name="first",
        role="translator",
        base_model="builtin",
        prompt_format="chat_template",
        path=folder,
        hyperparameters={"lora_r": 8},
        metrics={"final_loss": 1.5},
    )
    size = sum(path.stat().st_size for path in folder.iterdir())
    assert adapters.folder_is_present(row) and row.size_bytes == size and row.metrics["final_loss"] == 1.5
    with pytest.raises(sqlite3.IntegrityError):
        studio_adapters.register(
            db, name="first", role="x", base_model="b", prompt_format="plain", path=folder, hyperparameters={}
        )
    with pytest.raises(UserError, match="already called 'first'"):
        studio_adapters.rename(db, "first", "first")
    renamed = studio_adapters.rename(db, "first", "second")
    assert renamed.path.endswith("second") and (home / "adapters" / "second").is_dir()
    assert not folder.exists() and adapters.get(db, "first") is None
    adapters.set_role(db, "second", "persona")
    assert adapters.get(db, "second").role == "persona"
    studio_adapters.delete(db, "second")
    assert adapters.get(db, "second") is None and not (home / "adapters" / "second").exists()
    with pytest.raises(UserError, match="No adapter named 'second'"):
        adapters.require(db, "second")


def test_an_adapter_is_not_deleted_while_a_task_reads_it_and_is_once_that_task_is_gone(db, home):
    from registry import tasks
    from studio.supervisor import process_start

    folder = lora_folder(home / "adapters" / "busy")
    studio_adapters.register(
        db,
        name="busy",
        role="translator",
        base_model="b",
        prompt_format="plain",
        path=folder,
        hyperparameters={},
    )
    reader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        task = tasks.create(db, kind="evaluate", adapter_name="busy", settings={})
        tasks.update(db, task.id, status="running", pid=reader.pid, pid_started=process_start(reader.pid))
        with pytest.raises(UserError, match=rf"busy is in use by #{task.id} evaluation"):
            studio_adapters.delete(db, "busy")
        assert folder.is_dir() and adapters.get(db, "busy") is not None
    finally:
        reader.kill()
        reader.wait()
    studio_adapters.delete(db, "busy")  # the task's process is gone: it ends as interrupted
    assert adapters.get(db, "busy") is None and not folder.exists()
    assert tasks.get(db, task.id).status == "interrupted"


def test_conversations_persist_across_connections_and_delete_their_messages(db):
    conversation = conversations.create(
        db, title="问诊", base_model="builtin", adapter="t1", role="translator"
    )
    conversations.add_message(db, conversation["id"], "user", "fever")
    conversations.add_message(
        db, conversation["id"], "assistant", "发烧", adapter="t1", settings={"temperature": 0.5}
    )
    reopened = connect()
    stored = conversations.messages(reopened, conversation["id"])
    assert [(m["role"], m["content"]) for m in stored] == [("user", "fever"), ("assistant", "发烧")]
    assert stored[1]["settings"] == {"temperature": 0.5} and stored[1]["adapter"] == "t1"
    conversations.rename(reopened, conversation["id"], "新名字")
    assert conversations.get(reopened, conversation["id"])["title"] == "新名字"
    conversations.delete(reopened, conversation["id"])
    assert conversations.get(db, conversation["id"]) is None and db["messages"].count == 0


def test_job_lookup_by_status(db):
    first = jobs.create(db, adapter_name="a", config={"lr": 1e-4})
    jobs.finish(db, first.id, "interrupted")
    second = jobs.create(db, adapter_name="a", config={})
    assert jobs.active_for_name(db, "a").id == second.id
    assert jobs.latest_resumable(db, "a").id == first.id
    assert jobs.get(db, first.id).config == {"lr": 1e-4}


@pytest.mark.parametrize("name", ["t1", "med-zh_1.2", "甄嬛-v1", "A"])
def test_safe_names_pass(name):
    assert check_name(f"  {name} ") == name


@pytest.mark.parametrize(
    "name", ["", "../evil", "a/b", "with space", ".hidden", "-x", "x" * 65, "a..b", "base"]
)
def test_unsafe_names_are_refused_with_the_rule(name):
    with pytest.raises(UserError, match="name"):
        check_name(name)


def _register(db, folder, name="first"):
    return studio_adapters.register(
        db,
        name=name,
        role="translator",
        base_model="builtin",
        prompt_format="plain",
        path=folder,
        hyperparameters={},
    )


def test_deleting_an_adapter_removes_its_evaluations_predictions_and_folder(db, home):
    from registry import evaluations

    adapter = _register(db, lora_folder(home / "adapters" / "first"))
    predictions = home / "evaluations" / "first.jsonl"
    predictions.parent.mkdir()
    predictions.write_text("{}\n")
    row = dict(adapter_name="first", base_model="builtin", role="translator", kind="translation")
    row |= dict(
        dataset_name="d", dataset_fingerprint="f", num_examples=1, scores={"bleu": 1.0}, signature="s"
    )
    evaluations.store(db, adapter_id=adapter.id, predictions_path=str(predictions), **row)
    base = evaluations.store(db, adapter_id=None, predictions_path="", **row)
    studio_adapters.delete(db, "first")
    assert adapters.get(db, "first") is None and not (home / "adapters" / "first").exists()
    assert [e["id"] for e in db["evaluations"].rows] == [base.id]  # the base model's own score stays
    assert not predictions.exists() and not list((home / "adapters").iterdir())


def test_a_failed_delete_changes_nothing(db, home, monkeypatch):
    adapter = _register(db, lora_folder(home / "adapters" / "first"))

    def failing_delete(*args):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(type(db["adapters"]), "delete", failing_delete)
    with pytest.raises(sqlite3.OperationalError):
        studio_adapters.delete(db, "first")
    assert adapters.get(db, "first").id == adapter.id
    assert (home / "adapters" / "first" / "adapter_model.safetensors").is_file()
    assert [p.name for p in (home / "adapters").iterdir()] == ["first"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"modules_to_save": ["lm_head"]}, "replaces whole modules \\(modules_to_save: lm_head\\)"),
        ({"trainable_token_indices": {"embed_tokens": [1, 2]}}, "trainable_token_indices"),
        ({"peft_type": "IA3"}, "is a IA3 adapter: only LoRA"),
    ],
)
def test_adapters_the_per_request_choice_cannot_reach_are_refused_at_registration(db, home, config, message):
    folder = lora_folder(home / "adapters" / "first", **config)
    with pytest.raises(UserError, match=message):
        _register(db, folder)
    assert db["adapters"].count == 0


def test_a_damaged_safetensors_file_is_refused_with_a_clear_message(db, home):
    folder = lora_folder(home / "adapters" / "first")
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(
        UserError, match="adapter_model.safetensors is damaged.*Delete the adapter and retrain"
    ):
        _register(db, folder)
    weights.write_bytes(b"\xff" * 20)
    with pytest.raises(UserError, match="is damaged \\(its header is cut off\\)"):
        _register(db, folder)
