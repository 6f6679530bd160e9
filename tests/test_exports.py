"""Exports as detached tasks, and the Export section of an adapter card."""

import os
import signal
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import texts
from core.errors import UserError
from exporters import requests
from registry import tasks as task_rows
from serving import tasks
from studio import supervisor
from tests.conftest import PROJECT_ROOT, make_adapter, register_adapter, use_running_server_navigation


@pytest.fixture
def adapter(db, home, tiny_model_dir):
    folder = make_adapter(tiny_model_dir, home / "adapters" / "med-zh", seed=1)
    return register_adapter(db, "med-zh", folder, f"local:{tiny_model_dir}", role="translator")


def _wait_end(db, task_id: int, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while (task := tasks.get(db, task_id)).status in task_rows.ACTIVE:
        assert time.time() < deadline, tasks.log_tail(task)
        time.sleep(0.3)
    return task


@pytest.mark.slow
def test_a_merge_runs_detached_reports_its_stages_and_its_result(db, adapter, home):
    task = requests.start(db, "med-zh", "merge", dtype="fp32")
    assert task.settings["out"] == str(home / "exports" / "med-zh-merged")
    assert requests.describe(task).startswith("⏳ merged export")
    task = _wait_end(db, task.id)
    assert task.status == "succeeded", task.error
    assert task.stage == "write"
    merged = Path(task.result["path"])
    assert (merged / "model.safetensors").is_file() and (merged / "README.md").is_file()
    assert requests.describe(task) == "merged export · ✅ done"
    # the next export of the same kind gets a new name, never the existing folder
    assert requests.free_output("med-zh", "merge") == home / "exports" / "med-zh-merged-2"


def test_bad_exports_are_refused_before_any_task_exists(db, adapter, home, monkeypatch):
    (home / "exports").mkdir()
    (home / "exports" / "taken").mkdir()
    with pytest.raises(UserError, match="already exists"):
        requests.start(db, "med-zh", "merge", out=str(home / "exports" / "taken"))
    with pytest.raises(UserError, match="Unsupported dtype"):
        requests.start(db, "med-zh", "merge", dtype="int3")
    with pytest.raises(UserError, match="no-such"):
        requests.start(db, "no-such", "merge")
    with pytest.raises(UserError, match="owner/name"):
        requests.start(db, "med-zh", "push", hub="huggingface", repo="nope")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(UserError, match="HF_TOKEN"):
        requests.start(db, "med-zh", "push", hub="huggingface", repo="you/med-zh")
    assert task_rows.list_recent(db) == []


@pytest.mark.slow
def test_a_stopped_export_is_cancelled_and_a_killed_one_interrupted_leaving_nothing(db, adapter, home):
    first = requests.start(db, "med-zh", "merge")
    while tasks.get(db, first.id).stage is None:  # stopped once it is at work
        time.sleep(0.1)
    tasks.stop(db, first.id)
    first = _wait_end(db, first.id)
    assert first.status in ("cancelled", "succeeded")  # a tiny model may finish first
    if first.status == "cancelled":
        assert not Path(first.settings["out"]).exists()

    second = requests.start(db, "med-zh", "merge", out=str(home / "exports" / "killed"))
    out = Path(second.settings["out"])
    (home / "exports" / ".tmp-killed").mkdir(parents=True, exist_ok=True)  # as if killed while writing
    os.kill(second.pid, signal.SIGKILL)
    second = _wait_end(db, second.id)
    assert second.status == "interrupted" and "stopped before it finished" in second.error
    supervisor.reconcile(db)  # what the studio's Reconciler does on its next tick
    assert not out.exists() and not (home / "exports" / ".tmp-killed").exists()


@pytest.mark.slow
def test_the_export_section_starts_follows_and_explains(db, adapter, monkeypatch, tiny_model_dir):
    use_running_server_navigation(monkeypatch)
    monkeypatch.setenv("TRANSLATOR_BASE_MODEL", str(tiny_model_dir))
    app = AppTest.from_file(str(PROJECT_ROOT / "翻译机器人.py"), default_timeout=120)
    app.run()
    app.switch_page("pages/adapters.py").run()
    assert not app.exception, app.exception
    assert [tab.label for tab in app.tabs][:6] == list(texts.EXPORT_TABS.values())
    # vLLM: the tiny adapter's rank 4 is refused, with the reason, before anyone tries
    assert any("LoRA rank r=4" in warning.value for warning in app.warning)
    app.button(key="merge-start-med-zh").click().run()
    assert not app.exception, app.exception
    task = task_rows.list_recent(db, adapter_name="med-zh")[0]
    assert task.kind == "merge" and task.status in (*task_rows.ACTIVE, "succeeded")
    _wait_end(db, task.id)
    app.run()
    assert any("merged export · ✅ done" in md.value for md in app.markdown)
    assert any(str(Path(task.settings["out"])) in code.value for code in app.code)
    # a second click on an existing output is a message, not a task
    app.text_input(key="merge-out-med-zh").set_value(task.settings["out"])
    app.button(key="merge-start-med-zh").click().run()
    assert any("already exists" in error.value for error in app.error)
    assert len(task_rows.list_recent(db, adapter_name="med-zh")) == 1


@pytest.mark.slow
def test_the_api_tab_starts_a_server_shows_how_to_call_it_and_stops_it(
    db, adapter, monkeypatch, tiny_model_dir
):
    import openai

    from serving import server
    from tests.conftest import free_port

    use_running_server_navigation(monkeypatch)
    monkeypatch.setenv("TRANSLATOR_BASE_MODEL", str(tiny_model_dir))
    app = AppTest.from_file(str(PROJECT_ROOT / "翻译机器人.py"), default_timeout=120)
    app.run()
    app.switch_page("pages/adapters.py").run()
    port = free_port()
    app.number_input(key="api-port-med-zh").set_value(port)
    app.button(key="api-start-med-zh").click().run()
    assert not app.exception, app.exception
    task = server.running(db)[0]
    try:
        task = _wait_running(db, task.id)
        url = f"http://127.0.0.1:{port}/v1"
        assert task.result["url"] == url
        app.run()
        assert any(f'base_url="{url}"' in code.value and 'model="med-zh"' in code.value for code in app.code)
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == [adapter.base_model, "med-zh"]
        app.button(key=f"api-stop-med-zh-{task.id}").click().run()
        assert _wait_end(db, task.id, timeout=30).status == "stopped"
    finally:
        if tasks.get(db, task.id).status in task_rows.ACTIVE:
            os.kill(task.pid, signal.SIGKILL)


def _wait_running(db, task_id: int, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while (task := tasks.get(db, task_id)).status == "queued":
        assert time.time() < deadline, tasks.log_tail(task)
        time.sleep(0.3)
    assert task.status == "running", tasks.log_tail(task)
    return task


def test_an_adapter_whose_weights_do_not_fit_its_config_fails_with_one_line(db, adapter, home):
    """Found walking the card in a browser: the merge ended with PyTorch's page-long size-mismatch
    list as the task's error."""
    import json

    from exporters import merge

    config = home / "adapters" / "med-zh" / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "r": 8}))
    with pytest.raises(UserError, match="Adapter 'med-zh' cannot be loaded") as refused:
        merge.merge(db, "med-zh", home / "exports" / "out")
    assert "\n" not in str(refused.value) and not (home / "exports" / "out").exists()


def test_the_task_process_runs_its_kind_from_the_table_and_writes_how_it_ended(db, adapter, tmp_path):
    """What `python -m exporters.worker ID` does, called in this process (the detached path is above)."""
    from exporters import worker

    assert set(worker.EXPORTS) == set(tasks.EXPORT_KINDS) and set(tasks.KINDS) == {*worker.EXPORTS, "server"}
    previous = signal.getsignal(signal.SIGTERM)
    try:
        out = tmp_path / "merged"
        merged = task_rows.create(db, kind="merge", adapter_name="med-zh", settings={"out": str(out)})
        assert worker.run(merged.id) == 0
        done = task_rows.get(db, merged.id)
        assert done.status == "succeeded" and done.result == {"path": str(out)} and done.stage == "write"
        assert (out / "model.safetensors").is_file()
        nobody = task_rows.create(
            db, kind="merge", adapter_name="nobody", settings={"out": str(tmp_path / "n")}
        )
        assert worker.run(nobody.id) == 2
        failed = task_rows.get(db, nobody.id)
        assert failed.status == "failed" and "nobody" in failed.error and not (tmp_path / "n").exists()
        assert worker.run(10_000) == 2  # no such task: nothing to do
    finally:
        signal.signal(signal.SIGTERM, previous)
