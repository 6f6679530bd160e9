"""The OpenAI-compatible server, through the official `openai` client over real HTTP."""

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest

from core.errors import UserError
from engine.generation import ChatEngine
from engine.roles import ASSISTANT
from registry import tasks as task_rows
from serving import server, tasks
from studio import supervisor
from tests.conftest import ApiServer, free_port, make_adapter, register_adapter, use_running_server_navigation

# what temperature=0 asks of the assistant role: its preset, greedy
GREEDY = ASSISTANT.decoding.with_changes(do_sample=False, max_new_tokens=12)
PROMPTS = ["The patient has a fever.", "Hello there!", "What is a LoRA adapter?", "Translate: cough"]


@pytest.fixture(scope="module")
def adapter_folders(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("api-adapters")
    return {name: make_adapter(tiny_model_dir, root / name, seed=seed) for seed, name in enumerate("abc", 1)}


@pytest.fixture
def engine_and_adapters(db, tiny_model_dir, adapter_folders):
    engine = ChatEngine(str(tiny_model_dir), device="cpu")
    rows = {
        name: register_adapter(db, name, folder, engine.base_model_id)
        for name, folder in adapter_folders.items()
    }
    return engine, rows


@pytest.fixture
def served(engine_and_adapters):
    engine, rows = engine_and_adapters
    with ApiServer(engine) as running:
        yield engine, rows, running


def _in_process(engine, adapter, text, decoding=GREEDY):
    return engine.reply(text, role=ASSISTANT, adapter=adapter, decoding=decoding).strip()


def _ask(client, model, text, **kwargs):
    messages = [{"role": "user", "content": text}]
    return client.chat.completions.create(model=model, messages=messages, **kwargs)


def test_models_lists_the_base_and_each_ready_adapter_of_it(served, db):
    engine, rows, running = served
    register_adapter(db, "other-base", rows["a"].path, "builtin:gemma3-270m")
    ids = [model.id for model in running.client().models.list()]
    assert ids == [engine.base_model_id, "a", "b", "c"]


def test_eight_concurrent_clients_over_three_adapters_and_the_base_each_get_their_own_reply(served):
    engine, rows, running = served
    choices = [None, rows["a"], rows["b"], rows["c"]]
    requests = [(choices[i % 4], PROMPTS[i % 3], i % 2 == 0) for i in range(8)]
    expected = [_in_process(engine, adapter, text) for adapter, text, _ in requests]
    by_model = {}
    for (adapter, _, _), reply in zip(requests, expected, strict=True):
        by_model.setdefault(adapter and adapter.name, set()).add(reply)
    assert len(set.union(*by_model.values())) >= 4, (
        "each model must answer differently for cross-talk to show"
    )
    client, start = running.client(), threading.Barrier(8)

    def ask(adapter, text, stream):
        model = adapter.name if adapter else engine.base_model_id
        start.wait()
        if stream:
            chunks = _ask(client, model, text, temperature=0, max_tokens=12, stream=True)
            return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        return _ask(client, model, text, temperature=0, max_tokens=12).choices[0].message.content

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda request: ask(*request), requests))
    assert [reply.strip() for reply in replies] == expected
    assert running.scheduler.widest >= 4, "the requests ran one by one, not batched together"


def test_streaming_usage_completions_stop_and_seed(served):
    engine, rows, running = served
    client = running.client()
    whole = _ask(client, "a", PROMPTS[0], temperature=0, max_tokens=12)
    assert whole.usage.completion_tokens == 12 and whole.choices[0].finish_reason == "length"
    assert whole.usage.prompt_tokens == len(engine.prompt_ids(ASSISTANT, PROMPTS[0], adapter=rows["a"]))
    chunks = list(
        _ask(
            client,
            "a",
            PROMPTS[0],
            temperature=0,
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == whole.choices[0].message.content
    )
    assert chunks[-1].usage.completion_tokens == 12 and chunks[-2].choices[0].finish_reason == "length"

    text = whole.choices[0].message.content
    cut = text.strip()[3:6]
    stopped = _ask(client, "a", PROMPTS[0], temperature=0, max_tokens=12, stop=[cut])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[: text.index(cut)]

    sampled = [_ask(client, "b", PROMPTS[1], temperature=1.0, seed=7, max_tokens=12) for _ in range(2)]
    assert sampled[0].choices[0].message.content == sampled[1].choices[0].message.content

    completion = client.completions.create(model="c", prompt="Once upon a time", max_tokens=8, temperature=0)
    assert completion.object == "text_completion" and completion.usage.completion_tokens <= 8
    assert completion.choices[0].text


def test_bad_requests_get_openai_errors_and_the_server_keeps_answering(served):
    engine, rows, running = served
    client = running.client()
    with pytest.raises(openai.NotFoundError) as unknown:
        _ask(client, "nobody", "hi")
    assert unknown.value.code == "model_not_found" and "Models served: " in unknown.value.message
    with pytest.raises(openai.BadRequestError) as too_long:
        _ask(client, "a", "fever " * 1200)
    assert too_long.value.code == "context_length_exceeded"
    for bad in ({"max_tokens": 0}, {"max_tokens": -3}, {"temperature": 9}, {"stop": [""]}, {"n": 2}):
        with pytest.raises(openai.BadRequestError):
            _ask(client, "a", "hi", **bad)
    status, body = _post(f"{running.url}/chat/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, body = _post(
        f"{running.url}/chat/completions", json.dumps({"model": "a", "messages": []}).encode()
    )
    assert status == 400 and "messages" in body["error"]["message"]
    after = _ask(client, "a", PROMPTS[0], temperature=0, max_tokens=12)
    assert after.choices[0].message.content.strip() == _in_process(engine, rows["a"], PROMPTS[0])


def _post(url: str, data: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_a_key_is_required_when_set_and_beyond_this_machine(engine_and_adapters):
    engine, _ = engine_and_adapters
    with ApiServer(engine, api_key="s3cret") as running:
        with pytest.raises(openai.AuthenticationError) as wrong:
            running.client("wrong").models.list()
        assert wrong.value.status_code == 401 and wrong.value.code == "invalid_api_key"
        assert [m.id for m in running.client("s3cret").models.list()][0] == engine.base_model_id
    with pytest.raises(UserError, match="API key"):
        server.check_binding("0.0.0.0", None)
    server.check_binding("0.0.0.0", "s3cret")
    server.check_binding("127.0.0.1", None)
    server.check_binding("::1", None)


def test_in_team_mode_each_personal_key_sees_its_own_adapters_and_the_shared_ones(engine_and_adapters, db):
    from registry import accounts as account_rows
    from studio import accounts
    from studio import adapters as studio_adapters
    from studio.accounts import Asker

    engine, rows = engine_and_adapters
    ana, _ = accounts.create_account(db, "ana")
    bo, _ = accounts.create_account(db, "bo")
    with db.conn:  # a is ana's and private, b is ana's and shared, c is bo's
        for name, owner in (("a", ana), ("b", ana), ("c", bo)):
            db["adapters"].update(rows[name].id, {"owner_id": owner.id})
    studio_adapters.share(db, "b", True, Asker(ana))
    ana_key, bo_key = accounts.create_key(db, Asker(ana)), accounts.create_key(db, Asker(bo))
    base = engine.base_model_id
    with ApiServer(engine, team=True) as running:
        assert [m.id for m in running.client(ana_key).models.list()] == [base, "a", "b"]
        assert [m.id for m in running.client(bo_key).models.list()] == [base, "b", "c"]
        for key, model in ((ana_key, "b"), (bo_key, "b"), (bo_key, "c"), (bo_key, base)):
            reply = _ask(running.client(key), model, "Hello there!", max_tokens=4, temperature=0)
            assert reply.choices[0].message.content is not None
        with pytest.raises(openai.NotFoundError) as private:
            _ask(running.client(bo_key), "a", "Hello there!", max_tokens=4)
        with pytest.raises(openai.NotFoundError) as missing:
            _ask(running.client(bo_key), "zz", "Hello there!", max_tokens=4)
        # ana's private adapter reads exactly like one that does not exist
        assert private.value.body["message"].replace("`a`", "`zz`") == missing.value.body["message"]
        assert "`a`" not in missing.value.body["message"].split("served:")[1]
        for key in ("sk-tr-forged", "unused"):
            with pytest.raises(openai.AuthenticationError) as refused:
                running.client(key).models.list()
            assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
        accounts.revoke_key(db, Asker(bo), account_rows.keys_of(db, bo.id)[0]["id"])
        with pytest.raises(openai.AuthenticationError):
            running.client(bo_key).models.list()


@pytest.mark.slow
def test_a_detached_server_is_listed_answers_and_stops_from_the_cli(db, engine_and_adapters, tiny_model_dir):
    port = free_port()
    run = subprocess.run(
        [sys.executable, "-m", "serving.server", "start", "--base", str(tiny_model_dir), "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ,
    )
    assert run.returncode == 0, run.stderr
    task = task_rows.list_recent(db, kind="server")[0]
    try:
        deadline = time.time() + 120
        while (task := tasks.get(db, task.id)).status == "queued":
            assert time.time() < deadline, tasks.log_tail(task)
            time.sleep(0.5)
        assert task.status == "running", tasks.log_tail(task)
        assert task.result["url"] == f"http://127.0.0.1:{port}/v1"
        client = openai.OpenAI(base_url=task.result["url"], api_key="unused", max_retries=0)
        assert _ask(client, "a", "hi", max_tokens=3).usage.completion_tokens <= 3
        listed = subprocess.run(
            [sys.executable, "-m", "serving.server", "list"], capture_output=True, text=True
        )
        assert f"{task.id}\trunning" in listed.stdout
        stop = subprocess.run([sys.executable, "-m", "serving.server", "stop", str(task.id)], timeout=30)
        assert stop.returncode == 0
        deadline = time.time() + 30
        while (task := tasks.get(db, task.id)).status == "running":
            assert time.time() < deadline
            time.sleep(0.2)
        assert task.status == "stopped"
    finally:
        if task_rows.get(db, task.id).status in task_rows.ACTIVE:
            os.kill(task.pid, signal.SIGKILL)
    deadline = time.time() + 15
    while supervisor.process_alive(task.pid, task.pid_started):
        assert time.time() < deadline, "the server's process outlived its stop"
        time.sleep(0.2)


def test_the_chat_page_talks_to_an_openai_compatible_endpoint(served, db, monkeypatch):
    """The same chat UI, answered by a model served elsewhere (here: our own server)."""
    from streamlit.testing.v1 import AppTest

    from core import texts
    from registry import conversations
    from tests.conftest import PROJECT_ROOT

    engine, rows, running = served
    use_running_server_navigation(monkeypatch)
    monkeypatch.setenv("TRANSLATOR_BASE_MODEL", engine.spec.name)
    app = AppTest.from_file(str(PROJECT_ROOT / "翻译机器人.py"), default_timeout=120)
    app.run()
    app.sidebar.segmented_control(key="chat-source").set_value("remote").run()
    app.sidebar.text_input(key="remote-url").set_value("http://127.0.0.1:9/v1").run()
    assert any("Cannot reach http://127.0.0.1:9/v1" in e.value for e in app.error)
    app.sidebar.text_input(key="remote-url").set_value(running.url).run()
    assert not app.exception, app.exception
    model_box = app.sidebar.selectbox(key="remote-model")
    assert model_box.options == [engine.base_model_id, "a", "b", "c"]
    model_box.select("b").run()
    for widget in app.sidebar.number_input:
        if widget.label == texts.MAX_NEW_TOKENS:
            widget.set_value(6)
    app.sidebar.toggle(key="sample-assistant-").set_value(False)
    app.chat_input[0].set_value(PROMPTS[0]).run()
    assert not app.exception, app.exception
    stored = conversations.messages(db, conversations.list_all(db)[0]["id"])
    greedy = ASSISTANT.decoding.with_changes(do_sample=False, max_new_tokens=6)
    assert stored[1]["content"] == _in_process(engine, rows["b"], PROMPTS[0], greedy)
    assert stored[1]["base_model"] == f"b @ {running.url}"


def test_a_server_that_refuses_unknown_fields_is_asked_again_without_the_penalty_names():
    """OpenAI's own API answers 400 to fields it does not know; llama.cpp's and ours read them."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    from engine.roles import PERSONA
    from serving.remote import RemoteEngine

    bodies = []

    async def strict(request: Request):
        body = await request.json()
        bodies.append(body)
        unknown = sorted(set(body) - {"model", "messages", "stream", "max_tokens", "temperature", "top_p"})
        if unknown:
            error = {"message": f"Unrecognized request argument supplied: {unknown[0]}", "type": "x"}
            return JSONResponse({"error": {**error, "param": None, "code": None}}, status_code=400)
        chunk = {"id": "1", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
        chunk["choices"] = [{"index": 0, "delta": {"content": "好"}, "finish_reason": None}]
        return StreamingResponse(iter([f"data: {json.dumps(chunk)}\n\n", "data: [DONE]\n\n"]))

    port = free_port()
    app = Starlette(routes=[Route("/v1/chat/completions", strict, methods=["POST"])])
    strict_server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=strict_server.run, daemon=True)
    thread.start()
    while not strict_server.started:
        time.sleep(0.05)
    try:
        far = RemoteEngine(f"http://127.0.0.1:{port}/v1", "m")
        assert "".join(far.stream("你好", role=PERSONA)) == "好"
    finally:
        strict_server.should_exit = True
        thread.join(timeout=30)
    penalty = PERSONA.decoding.repetition_penalty
    assert bodies[0]["repetition_penalty"] == bodies[0]["repeat_penalty"] == penalty
    assert len(bodies) == 2 and "repeat_penalty" not in bodies[1] and "repetition_penalty" not in bodies[1]
