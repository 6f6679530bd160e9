"""Our API described by `/openapi.json` and fuzzed by Schemathesis, a tester we did not write."""

import json
import urllib.error
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from engine.generation import ChatEngine
from engine.roles import ASSISTANT
from tests.conftest import ApiServer, make_adapter, register_adapter

CASES = {GenerationMode.POSITIVE: 100, GenerationMode.NEGATIVE: 100}  # per operation, bounded
# files and fine-tuning jobs (serving.fine_tuning): fewer cases each, as there are 14 operations
FINE_TUNING_CASES = 25
FINE_TUNING_PATHS = {
    "/v1/files",
    "/v1/files/{file_id}",
    "/v1/files/{file_id}/content",
    "/v1/fine_tuning/jobs",
    "/v1/fine_tuning/jobs/{job_id}",
    "/v1/fine_tuning/jobs/{job_id}/cancel",
    "/v1/fine_tuning/jobs/{job_id}/resume",
    "/v1/fine_tuning/jobs/{job_id}/events",
    "/v1/fine_tuning/jobs/{job_id}/checkpoints",
    "/v1/models/{model}",
}
# The schema cannot say that the last message comes from the user or that the prompt and
# `max_tokens` fit in the context, so a valid-looking request may rightly get a 400.
NOT_CHECKED = [positive_data_acceptance]
GREEDY = ASSISTANT.decoding.with_changes(do_sample=False, max_new_tokens=12)


@pytest.fixture
def served(db, tiny_model_dir, tmp_path):
    engine = ChatEngine(str(tiny_model_dir), device="cpu")
    adapter = register_adapter(
        db, "a", make_adapter(tiny_model_dir, tmp_path / "a", seed=1), engine.base_model_id
    )
    with ApiServer(engine) as running:
        yield engine, adapter, running


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.headers["content-type"] == "application/json"
        return json.load(response)


def test_the_description_lists_every_route_and_the_models_served_now(served):
    engine, adapter, running = served
    root = running.url.removesuffix("/v1")
    document = _get(f"{root}/openapi.json")
    assert set(document["paths"]) == {
        "/health",
        "/v1/models",
        "/v1/chat/completions",
        "/v1/completions",
        *FINE_TUNING_PATHS,
    }
    chat = document["paths"]["/v1/chat/completions"]["post"]
    model = chat["requestBody"]["content"]["application/json"]["schema"]["properties"]["model"]
    assert model["enum"] == [engine.base_model_id, "a"]
    assert "security" not in chat  # no key was set


def test_schemathesis_finds_no_server_error_and_every_error_has_openai_s_shape(served):
    engine, adapter, running = served
    root = running.url.removesuffix("/v1")
    schema = schemathesis.openapi.from_url(f"{root}/openapi.json")
    schema.config.base_url = root
    ran: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, cases in CASES.items():
            if operation.body or mode is GenerationMode.POSITIVE:  # a GET without inputs has no wrong form
                bounded = FINE_TUNING_CASES if operation.path in FINE_TUNING_PATHS else cases
                _fuzz(operation, mode, bounded, root, ran)
    print("Schemathesis cases per operation and mode:", ran, "total", sum(ran.values()))
    operations = {label.rsplit(" (", 1)[0] for label in ran}
    wrong_forms = [label for label in ran if label.endswith("(negative)")]
    assert len(operations) == 18 and len(wrong_forms) == 4, ran  # the four bodies' wrong forms too
    assert all(ran[label] >= 10 for label in ran if label.startswith("POST /v1/c")), ran
    # alive afterwards, and answering exactly as the engine does in process
    client = running.client()
    reply = client.chat.completions.create(
        model="a", messages=[{"role": "user", "content": "Hello there!"}], temperature=0, max_tokens=12
    )
    expected = engine.reply("Hello there!", role=ASSISTANT, adapter=adapter, decoding=GREEDY).strip()
    assert reply.choices[0].message.content.strip() == expected


def _fuzz(operation, mode: GenerationMode, cases: int, root: str, ran: dict[str, int]) -> None:
    label = f"{operation.label} ({mode.value})"

    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case):
        ran[label] = ran.get(label, 0) + 1
        if isinstance(case.body, dict) and case.body.get("max_tokens") is None:
            case.body.setdefault("max_completion_tokens", 8)  # short replies; a given limit is still fuzzed
        response = case.call_and_validate(base_url=root, excluded_checks=NOT_CHECKED, timeout=120)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["message"], error

    fuzz()


def test_an_unknown_path_or_method_answers_in_openai_s_error_shape(served):
    engine, adapter, running = served
    root = running.url.removesuffix("/v1")
    for method, path, status in (("GET", "/v1/nothing", 404), ("DELETE", "/v1/models", 405)):
        request = urllib.request.Request(f"{root}{path}", method=method)
        with pytest.raises(urllib.error.HTTPError) as answered:
            urllib.request.urlopen(request, timeout=30)
        assert answered.value.code == status
        error = json.load(answered.value)["error"]
        assert set(error) == {"message", "type", "param", "code"} and path in error["message"]
    assert "GET" in answered.value.headers["Allow"]


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_the_requests_schemathesis_broke_the_server_with_now_get_answers_or_400s(served):
    engine, adapter, running = served
    chat = {"model": "a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    # a temperature float32 cannot hold: near-greedy, not NaN
    status, body = _post(f"{running.url}/chat/completions", {**chat, "temperature": 5e-324, "top_p": 5e-324})
    assert status == 200 and body["choices"][0]["message"]["content"] is not None
    for wrong, param in (
        ({"seed": 2**64}, "seed"),
        ({"max_tokens": 0, "max_completion_tokens": 4}, "max_tokens"),
        ({"stream_options": [1]}, "stream_options"),
        ({"stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
        ({"n": 1.0}, "n"),
        ({"stop": 0}, "stop"),
    ):
        status, body = _post(f"{running.url}/chat/completions", {**chat, **wrong})
        assert status == 400 and body["error"]["param"] == param, (wrong, body)
    status, body = _post(f"{running.url}/completions", {"model": "a", "prompt": ""})
    assert status == 400 and body["error"]["param"] == "prompt"
