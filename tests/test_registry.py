import multiprocessing
import sqlite3
import threading

import pytest

from registry import adapters, connect, conversations, jobs
from registry.errors import UserError
from registry.names import check_name


def test_schema_is_created_with_wal_foreign_keys_and_recorded_migrations(db, home):
    assert {"adapters", "jobs", "metrics", "conversations", "messages", "roles"} <= set(db.table_names())
    assert db.journal_mode == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    applied = [row["name"] for row in db["_sqlite_migrations"].rows]
    assert applied == ["m001_initial_schema", "m002_evaluations"]
    again = connect()  # reopening applies nothing twice
    assert [row["name"] for row in again["_sqlite_migrations"].rows] == applied


def _insert_metrics(job_id: int, count: int) -> None:
    db = connect()
    for step in range(count):
        jobs.record_metric(db, job_id, step, loss=1.0)
        jobs.heartbeat(db, job_id, step=step)


def test_threads_and_processes_write_at_the_same_time(db):
    job = jobs.create(db, adapter_name="x", config={})
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_insert_metrics, args=(job["id"], 40)) for _ in range(2)]
    threads = [threading.Thread(target=_insert_metrics, args=(job["id"], 40)) for _ in range(2)]
    for worker in [*processes, *threads]:
        worker.start()
    for worker in [*processes, *threads]:
        worker.join(timeout=120)
    assert all(process.exitcode == 0 for process in processes)
    assert db["metrics"].count == 160


def test_a_connection_belongs_to_its_thread(db):
    errors = []

    def use_foreign_connection():
        try:
            db["jobs"].count  # noqa: B018
        except sqlite3.ProgrammingError as error:
            errors.append(error)

    thread = threading.Thread(target=use_foreign_connection)
    thread.start()
    thread.join()
    assert errors, "sqlite connections must not be shared across threads; open one per thread"


def test_adapter_rows_register_rename_and_delete_with_their_folders(db, home):
    folder = home / "adapters" / "first"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"12345")
    row = adapters.register(
        db,
        name="first",
        role="translator",
        base_model="builtin",
        prompt_format="chat_template",
        path=folder,
        hyperparameters={"lora_r": 8},
        metrics={"final_loss": 1.5},
    )
    assert row["status"] == "ready" and row["size_bytes"] == 5 and row["metrics"]["final_loss"] == 1.5
    with pytest.raises(sqlite3.IntegrityError):
        adapters.register(
            db, name="first", role="x", base_model="b", prompt_format="plain", path=folder, hyperparameters={}
        )
    renamed = adapters.rename(db, "first", "second")
    assert renamed["path"].endswith("second") and (home / "adapters" / "second").is_dir()
    assert not folder.exists() and adapters.get(db, "first") is None
    adapters.set_role(db, "second", "persona")
    assert adapters.get(db, "second")["role"] == "persona"
    adapters.delete(db, "second")
    assert adapters.get(db, "second") is None and not (home / "adapters" / "second").exists()
    with pytest.raises(UserError, match="No adapter named 'second'"):
        adapters.require(db, "second")


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
    jobs.finish(db, first["id"], "interrupted")
    second = jobs.create(db, adapter_name="a", config={})
    assert jobs.active_for_name(db, "a")["id"] == second["id"]
    assert jobs.latest_resumable(db, "a")["id"] == first["id"]
    assert jobs.get(db, first["id"])["config"] == {"lr": 1e-4}


@pytest.mark.parametrize("name", ["t1", "med-zh_1.2", "甄嬛-v1", "A"])
def test_safe_names_pass(name):
    assert check_name(f"  {name} ") == name


@pytest.mark.parametrize(
    "name", ["", "../evil", "a/b", "with space", ".hidden", "-x", "x" * 65, "a..b", "base"]
)
def test_unsafe_names_are_refused_with_the_rule(name):
    with pytest.raises(UserError, match="name"):
        check_name(name)
