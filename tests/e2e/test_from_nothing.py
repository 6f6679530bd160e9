"""A new user on a fresh machine: an empty home and an empty models cache, the README's server.

The first visit converts the built-in model with a progress bar; every later visit (a reload, a
second tab, a second browser) must chat, and every page must open, with no exception box and no
traceback in the server's log (the log check is the server fixture's teardown, for every test)."""

import os
import time

import pytest

from core import texts
from engine import catalogue
from registry import connect, conversations
from tests.e2e.conftest import StreamlitServer, assert_no_traceback, wait_idle

pytestmark = pytest.mark.e2e

BUILTIN = "builtin"  # SmolLM2: the shorter of the two built-in conversions, the same code path
PAGES = (("/train", texts.TRAIN_TITLE), ("/adapters", texts.ADAPTERS_TITLE), ("/roles", texts.ROLES_TITLE))


@pytest.fixture
def fresh_server(tmp_path):
    home, cache = tmp_path / "home", tmp_path / "models"
    env = {
        **os.environ,
        "TRANSLATOR_HOME": str(home),
        "TRANSLATOR_MODELS_DIR": str(cache),
        "TRANSLATOR_BASE_MODEL": BUILTIN,
        "PYTHONUNBUFFERED": "1",
    }
    home.mkdir()
    server = StreamlitServer(home, env, tmp_path / "streamlit.log").start()
    server.models_cache = cache
    yield server
    server.stop()
    assert_no_traceback(server)


def _exception_boxes(page) -> list[str]:
    return page.get_by_test_id("stException").all_inner_texts()


def _replies(home) -> list[dict]:
    db = connect(home / "registry.db")
    stored = [m for c in conversations.list_all(db) for m in conversations.messages(db, c["id"])]
    return [m for m in stored if m["role"] == "assistant"]


def _chat_once(page, server, text: str) -> None:
    """Send a message on a settled chat page and wait until its reply is stored and shown."""
    wait_idle(page)
    assert not _exception_boxes(page), f"{page.url}: {_exception_boxes(page)}\n{server.log_tail()}"
    before = len(_replies(server.home))
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")
    deadline = time.monotonic() + 180
    while len(_replies(server.home)) == before:
        assert time.monotonic() < deadline, f"no reply to {text!r}: {server.log_tail()}"
        assert not _exception_boxes(page), f"{page.url}: {_exception_boxes(page)}\n{server.log_tail()}"
        time.sleep(0.25)
    wait_idle(page)
    assert not _exception_boxes(page), f"{page.url}: {_exception_boxes(page)}\n{server.log_tail()}"


def test_a_fresh_install_converts_once_then_every_visit_tab_and_browser_chats(browser, fresh_server):
    assert not any(fresh_server.models_cache.glob("*/model.safetensors")), "the models cache starts empty"
    first = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = first.new_page()
    started = time.monotonic()
    page.goto(f"{fresh_server.url}/")
    page.get_by_test_id("stProgress").first.wait_for(timeout=60_000)  # the conversion's bar
    wait_idle(page, timeout=300_000)
    converted_in = time.monotonic() - started
    print(f"first visit: the built-in model converted and the chat ready in {converted_in:.0f} s")
    assert (
        fresh_server.models_cache / catalogue.BUILTIN_MODELS[BUILTIN].folder / "model.safetensors"
    ).is_file()
    assert page.get_by_test_id("stProgress").count() == 0, "the bar goes once the model has loaded"
    _chat_once(page, fresh_server, "Say hello in three words.")

    page.reload()
    _chat_once(page, fresh_server, "Name a colour.")
    second_tab = first.new_page()
    second_tab.goto(f"{fresh_server.url}/")
    _chat_once(second_tab, fresh_server, "Name a fruit.")
    other_browser = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    other_browser.goto(f"{fresh_server.url}/")
    _chat_once(other_browser, fresh_server, "Name an animal.")
    assert len(_replies(fresh_server.home)) == 4

    for path, title in (("/", None), *PAGES):
        other_browser.goto(f"{fresh_server.url}{path}")
        wait_idle(other_browser)
        if title is None:  # the chat page has no heading; its input shows it is there
            other_browser.get_by_test_id("stChatInputTextArea").wait_for(timeout=30_000)
        else:
            other_browser.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
        assert not _exception_boxes(other_browser), f"{path}: {_exception_boxes(other_browser)}"
    for context in (first, other_browser.context):
        context.close()
