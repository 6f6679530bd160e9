"""llama.cpp's own OpenAI-compatible server on our merged GGUF export, as the chat page's remote
endpoint in a real browser, and answering a greedy request as our own API server does."""

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core import texts
from registry import connect, conversations
from tests.conftest import THREADS, ApiServer, free_port, register_adapter
from tests.e2e.conftest import open_page, poll, wait_idle
from tests.e2e.test_browser import _assistant_texts

pytest.importorskip(
    "llama_cpp.server", reason="llama.cpp's server is not installed: ./setup.sh --dev builds its bindings"
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ADAPTER = "smol-llama-cpp"
SYSTEM = "You are a careful medical translator."
QUESTIONS = [
    "Translate into Chinese: The patient has a fever.",
    "What is a LoRA adapter?",
    "Hello there!",
    "Summarise: the drug lowered blood pressure in most patients.",
]
CUT_CHARACTER = "\ufffd"  # what decoding shows for the first bytes of a character
GGML_TYPE_F32 = 0  # llama.cpp's cache type: f32, as our engine keeps its attention cache


class LlamaCppServer:
    """`python -m llama_cpp.server` on one GGUF file, on a free loopback port."""

    def __init__(self, model: Path, alias: str, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", alias,
            "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048",
            "--n_threads", str(THREADS), "--n_threads_batch", str(THREADS),
            "--type_k", str(GGML_TYPE_F32), "--type_v", str(GGML_TYPE_F32),
        ]  # fmt: skip
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"llama.cpp's server exited: {log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("llama.cpp's server did not answer in 120 s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def exported(app_home, smollm2_chat_export):
    """The session's SmolLM2 adapter in its chat template (tests/conftest.py), registered in the
    app's home under this test's name, and its merged f32 GGUF."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSLATOR_HOME", str(app_home))
        register_adapter(
            connect(),
            ADAPTER,
            smollm2_chat_export.folder,
            "builtin",
            role="assistant",
            prompt_format="chat_template",
        )
        yield smollm2_chat_export.engine, smollm2_chat_export.merged("f32")


@pytest.fixture(scope="module")
def llama_server(exported, app_home):
    engine, gguf = exported
    running = LlamaCppServer(gguf, ADAPTER, app_home / "llama-cpp-server.log")
    yield running
    running.stop()


def test_the_same_greedy_request_gets_the_same_text_from_our_server_and_llama_cpp_s(exported, llama_server):
    engine, gguf = exported
    import openai

    theirs = openai.OpenAI(base_url=llama_server.url, api_key="none", max_retries=0, timeout=300)
    cut = 0
    with ApiServer(engine) as ours_running:
        ours = ours_running.client()
        for question in QUESTIONS:
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
            # both penalty names at 1.0: ours reads repetition_penalty, llama.cpp repeat_penalty (default 1.1)
            same = {
                "temperature": 0,
                "max_tokens": 32,
                "extra_body": {"repetition_penalty": 1.0, "repeat_penalty": 1.0},
            }
            mine = ours.chat.completions.create(model=ADAPTER, messages=messages, **same)
            llama = theirs.chat.completions.create(model=ADAPTER, messages=messages, **same)
            ours_text, their_text = mine.choices[0].message.content, llama.choices[0].message.content
            assert ours_text.strip(), question
            if ours_text.endswith(CUT_CHARACTER) and mine.usage.completion_tokens == 32:
                # max_tokens cut a character in two: ours shows the cut, llama-cpp-python generates
                # past max_tokens until the character is whole (Llama._create_completion)
                assert llama.usage.completion_tokens > 32, (question, their_text)
                assert their_text.startswith(ours_text.removesuffix(CUT_CHARACTER)), (question, their_text)
                cut += 1
            else:
                assert their_text == ours_text, question
    print(f"greedy replies compared whole: {len(QUESTIONS) - cut}, cut mid-character by max_tokens: {cut}")
    assert cut < len(QUESTIONS), "every reply was cut mid-character: nothing was compared whole"


def _replies_from(base_model: str) -> list[dict]:
    db = connect()
    return [
        message
        for conversation in conversations.list_all(db)
        for message in conversations.messages(db, conversation["id"])
        if message["role"] == "assistant" and message["base_model"] == base_model
    ]


def test_the_chat_page_lists_streams_and_keeps_a_conversation_with_llama_cpp_s_server(
    browser, server, llama_server, app_home, monkeypatch
):
    monkeypatch.setenv("TRANSLATOR_HOME", str(app_home))
    page = open_page(browser, f"{server.url}/")
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text(texts.CHAT_SOURCES["remote"]).click()
    wait_idle(page)
    address = sidebar.get_by_label(texts.REMOTE_URL)
    address.fill(llama_server.url)
    address.press("Enter")
    wait_idle(page)
    # the models llama.cpp lists: our adapter's name, given to it as the model's alias
    model_box = sidebar.get_by_label(texts.REMOTE_MODEL)
    poll(lambda: model_box.count() > 0, 30, "the model list from llama.cpp's server")
    model_box.click()
    assert page.get_by_role("option").all_inner_texts() == [ADAPTER]
    page.get_by_role("option", name=ADAPTER, exact=True).click()
    wait_idle(page)

    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("Tell me a short story about a cat.")
    box.press("Enter")
    seen: list[str] = []
    remote_model = f"{ADAPTER} @ {llama_server.url}"

    def finished():
        current = _assistant_texts(page)
        if current and current[-1] and (not seen or seen[-1] != current[-1]):
            seen.append(current[-1])
        return _replies_from(remote_model)

    stored = poll(finished, 180, "the reply from llama.cpp to be stored", interval=0.05)
    final = stored[-1]["content"]
    assert final.strip(), "llama.cpp's reply is empty"
    partial = [text for text in seen if text != final and final.startswith(text.rstrip("…").strip())]
    assert partial, f"expected to see the reply grow while streaming; saw {seen!r}"

    page.reload()
    wait_idle(page)
    assert "c=" in page.url
    poll(lambda: final.split()[0] in " ".join(_assistant_texts(page)), 30, "the stored reply after reload")
    assert "Tell me a short story about a cat." in page.get_by_test_id("stChatMessage").all_inner_texts()[0]
    page.context.close()
