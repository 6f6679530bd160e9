"""The product in a real browser: streaming chat, training from the page, re-attaching, two users."""

import os
import time

import pytest

from core import texts
from engine import catalogue
from engine.roles import TRANSLATOR
from registry import adapters, connect, conversations, jobs
from tests.conftest import make_adapter, register_adapter
from tests.e2e.conftest import assert_no_traceback, open_page, poll, stop_trainers, wait_idle

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def registry_env(app_home):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSLATOR_HOME", str(app_home))
        yield


def _assistant_texts(page) -> list[str]:
    messages = page.locator("[data-testid='stChatMessage']").filter(
        has=page.get_by_test_id("stChatMessageAvatarAssistant")
    )
    return [
        text.strip() for text in messages.locator("[data-testid='stChatMessageContent']").all_inner_texts()
    ]


def _send(page, text: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")


def _send_and_wait_for_reply(page, text: str, timeout: float) -> dict:
    """Send a message and wait for the reply the app stores, in whichever conversation it shows."""
    seen = {reply["id"] for reply in _all_assistant_replies()}
    _send(page, text)
    new = poll(
        lambda: [reply for reply in _all_assistant_replies() if reply["id"] not in seen],
        timeout,
        f"a reply to {text!r}",
    )
    return new[0]


def _start_job_from_the_form(page, adapter_name: str, max_steps: int) -> None:
    page.get_by_text(texts.HYPERPARAMETERS).click()
    labels = texts.SETTING_LABELS
    settings = ((labels["max_steps"], max_steps), (labels["batch_size"], 1), (labels["grad_accum"], 1))
    for label, value in (*settings, (texts.ADAPTER_NAME, adapter_name)):
        field = page.get_by_label(label)
        field.fill(str(value))
        field.press("Tab")
        wait_idle(page)
    page.get_by_role("button", name=texts.START).click()


def _wait_for_job_panel(page, adapter_name: str, status: str, timeout: float) -> None:
    title = f"{adapter_name} · {texts.STATUS[status]}"
    poll(lambda: page.get_by_text(title).count() > 0, timeout, f"the job panel to show {title!r}", 0.5)


def _assistant_replies(conversation_id: int) -> list[dict]:
    return [m for m in conversations.messages(connect(), conversation_id) if m["role"] == "assistant"]


def _all_assistant_replies() -> list[dict]:
    return [reply for c in conversations.list_all(connect()) for reply in _assistant_replies(c["id"])]


def _choose_in_sidebar_selectbox(page, label: str, option: str) -> None:
    page.get_by_test_id("stSidebar").get_by_label(label).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def _set_max_new_tokens(page, tokens: int) -> None:
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text(texts.DECODING).click()
    field = sidebar.get_by_label(texts.MAX_NEW_TOKENS)
    field.fill(str(tokens))
    field.press("Tab")
    wait_idle(page)


def test_a_chat_reply_streams_and_persists_across_a_reload(browser, server):
    page = open_page(browser, f"{server.url}/")
    assert_our_navigation(page)
    _choose_in_sidebar_selectbox(page, texts.BASE_MODEL, "builtin")
    _set_max_new_tokens(page, 48)  # tokens enough to see a reply grow; the rest would only wait
    _send(page, "Tell me a short story about a cat.")
    seen = []

    def finished():
        current = _assistant_texts(page)
        if current and current[-1] and (not seen or seen[-1] != current[-1]):
            seen.append(current[-1])
        return _all_assistant_replies()

    stored = poll(finished, 180, "the reply to be stored", interval=0.05)
    final = stored[-1]["content"]
    partial = [text for text in seen if text != final and final.startswith(text.rstrip("…").strip())]
    assert partial, f"expected to see the reply grow while streaming; saw {seen!r}"
    assert stored[-1]["base_model"] == "builtin" and stored[-1]["adapter"] == ""

    page.reload()
    wait_idle(page)
    assert "c=" in page.url
    poll(lambda: final.split()[0] in " ".join(_assistant_texts(page)), 30, "the stored reply after reload")
    page.context.close()


def our_navigation(page) -> list[str]:
    return page.get_by_test_id("stSidebar").get_by_test_id("stPageLink-NavLink").all_inner_texts()


def assert_our_navigation(page, context: str = "") -> None:
    """Only our pages, never Streamlit's listing of every file in pages/."""
    links = our_navigation(page)
    ours = [
        texts.PAGE_CHAT,
        texts.PAGE_TRAIN,
        texts.PAGE_ADAPTERS,
        texts.PAGE_PREFERENCES,
        texts.PAGE_REWARDS,
    ]
    assert [link.splitlines()[-1].strip() for link in links] == [*ours, texts.PAGE_ROLES], (links, context)
    assert page.get_by_test_id("stSidebarNav").count() == 0


def test_0_a_fresh_server_shows_only_our_pages_from_the_first_moment(browser, tmp_path, tiny_model_dir):
    """The pages/ folder puts a new server in Streamlit's legacy pages-folder mode; the page URL
    must still show its own page, and the sidebar never the raw files (chat, common, texts ...).
    Pins common.enter_through_entry against Streamlit upgrades."""
    from tests.e2e.conftest import StreamlitServer

    env = {**os.environ, "TRANSLATOR_HOME": str(tmp_path), "TRANSLATOR_BASE_MODEL": str(tiny_model_dir)}
    fresh = StreamlitServer(tmp_path, env, tmp_path / "streamlit.log").start()
    try:
        for path, title in (("/adapters", texts.ADAPTERS_TITLE), ("/train", texts.TRAIN_TITLE)):
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(f"{fresh.url}{path}")
            seen = set()
            deadline = time.monotonic() + 120
            # The first visit runs twice (the pages-folder run hands over to the entry); the check is
            # on the settled page, while every sidebar text seen on the way is kept for the raw-name check.
            while time.monotonic() < deadline:
                seen.update(page.get_by_test_id("stSidebar").all_inner_texts())
                idle = page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").count()
                if idle and page.get_by_role("heading", name=title).count() and our_navigation(page):
                    break
                time.sleep(0.1)
            wait_idle(page)
            sidebar = page.get_by_test_id("stSidebar").all_inner_texts()
            settled = f"{path}: sidebar {sidebar}; server log: {fresh.log_tail()}"
            assert page.get_by_role("heading", name=title).count() == 1, settled
            assert_our_navigation(page, settled)
            raw = {"common", "texts", "chat", "train", "adapters", "roles", "preferences", "rewards"}
            assert not any(line.strip() in raw for text in seen for line in text.splitlines()), seen
            page.context.close()
    finally:
        fresh.stop()
    assert_no_traceback(fresh)


def test_b_a_job_started_from_the_page_completes_and_its_adapter_answers(browser, server):
    page = open_page(browser, f"{server.url}/train")
    assert_our_navigation(page)
    _start_job_from_the_form(page, "e2e-trained", max_steps=4)
    _wait_for_job_panel(page, "e2e-trained", "succeeded", 180)
    assert adapters.folder_is_present(adapters.get(connect(), "e2e-trained"))

    page.get_by_role("link", name=texts.GO_CHAT).click()
    wait_idle(page)
    assert_our_navigation(page)
    adapter_box = page.get_by_test_id("stSidebar").get_by_label(texts.ADAPTER)
    poll(
        lambda: (
            adapter_box.input_value()
            == texts.ADAPTER_CHOICE.format(group=texts.GROUPS["translator"], name="e2e-trained")
        ),
        30,
        "the adapter selected in the sidebar",
    )
    reply = _send_and_wait_for_reply(page, "The patient has a fever.", 120)
    assert reply["adapter"] == "e2e-trained" and reply["chat_role"] == "translator"
    page.context.close()


def test_c_reloading_or_restarting_mid_training_reattaches_to_the_live_progress(browser, server):
    page = open_page(browser, f"{server.url}/train")
    _start_job_from_the_form(page, "e2e-long", max_steps=2000)
    _wait_for_job_panel(page, "e2e-long", "running", 120)

    def shown_step(view) -> int:
        text = view.get_by_test_id("stProgress").first.inner_text()
        return int(text.split("step ")[1].split("/")[0])

    page.reload()
    wait_idle(page)
    _wait_for_job_panel(page, "e2e-long", "running", 30)
    first = poll(lambda: shown_step(page), 60, "a step to be shown")
    poll(lambda: shown_step(page) > first, 60, "the step to advance without any click")
    page.context.close()

    server.stop()  # a Streamlit restart: the detached trainer keeps going
    server.start()
    fresh = open_page(browser, f"{server.url}/train")  # a closed tab and a new server find the job
    _wait_for_job_panel(fresh, "e2e-long", "running", 30)
    first = poll(lambda: shown_step(fresh), 60, "a step to be shown after the restart")
    poll(lambda: shown_step(fresh) > first, 60, "the step to advance after the restart")
    fresh.get_by_role("button", name=texts.CANCEL).click()
    job = poll(lambda: jobs.latest_resumable(connect(), "e2e-long"), 90, "the job to be cancelled")
    assert job.status == "cancelled"
    _wait_for_job_panel(fresh, "e2e-long", "cancelled", 30)
    fresh.context.close()


def test_c2_compare_runs_with_one_click_after_typing(browser, server):
    page = open_page(browser, f"{server.url}/")
    page.get_by_text(texts.MODES["compare"], exact=True).click()
    wait_idle(page)
    page.get_by_label(texts.COMPARE_PROMPT).fill("Hello")  # focus stays in the text area
    page.get_by_role("button", name=texts.COMPARE_RUN).click()
    poll(lambda: page.get_by_text(f"{texts.BASE_ONLY}").count() > 0, 60, "the comparison to start")
    page.context.close()


def test_d_two_browsers_chatting_at_once_each_get_their_own_adapter(
    browser, server, tiny_model_dir, app_home
):
    from engine.generation import ChatEngine

    db = connect()
    base = f"local:{tiny_model_dir}"
    rows = {
        name: register_adapter(
            db,
            name,
            make_adapter(tiny_model_dir, app_home / "adapters" / name, seed),
            base,
            role="translator",
        )
        for name, seed in (("alpha", 11), ("beta", 12))
    }
    prompt = "Blood pressure should be measured twice a day."
    engine = ChatEngine(str(tiny_model_dir), device="cpu")
    expected = {
        name: engine.reply(prompt, role=TRANSLATOR, adapter=row).strip() for name, row in rows.items()
    }
    assert expected["alpha"] != expected["beta"]

    conversation_ids = {name: conversations.create(db, title=name)["id"] for name in rows}
    pages = {
        name: open_page(browser, f"{server.url}/?adapter={name}&c={conversation_ids[name]}") for name in rows
    }
    for name, page in pages.items():
        try:
            page.get_by_test_id("stChatInputTextArea").fill(prompt, timeout=10_000)
        except Exception:
            page.screenshot(path=f"/tmp/e2e_d_{name}.png")
            raise
    for page in pages.values():  # send both before either reply is done
        page.get_by_test_id("stChatInputTextArea").press("Enter")
    for name, conversation_id in conversation_ids.items():
        reply = poll(lambda cid=conversation_id: _assistant_replies(cid), 120, f"{name}'s reply")[-1]
        assert reply["adapter"] == name
        assert reply["content"] == expected[name]
    for page in pages.values():
        page.context.close()


@pytest.mark.skipif(os.environ.get("TRANSLATOR_SKIP_DEMO") == "1", reason="TRANSLATOR_SKIP_DEMO=1")
def test_e_the_demo_button_produces_a_usable_translator(browser, server):
    page = open_page(browser, f"{server.url}/train")
    started = time.monotonic()
    page.get_by_role("button", name=texts.DEMO_BUTTON).click()
    _wait_for_job_panel(page, "demo-translator-1", "succeeded", 420)
    print(f"\ndemo training took {time.monotonic() - started:.0f} s from the click")
    demo = adapters.get(connect(), "demo-translator-1")
    assert (
        adapters.folder_is_present(demo)
        and demo.role == "translator"
        and demo.base_model == catalogue.CHINESE_BUILTIN
    )
    page.get_by_role("link", name=texts.GO_CHAT).click()
    wait_idle(page)
    reply = _send_and_wait_for_reply(page, "The patient has a fever.", 180)
    assert reply["adapter"] == "demo-translator-1" and reply["content"]
    print(f"demo adapter: 'The patient has a fever.' → {reply['content']!r}")
    page.context.close()


def _other_language_on(page, language: str, settle_seconds: float = 10.0) -> list[str]:
    """Interface text of the other language still on the page once it has settled: an element of
    the previous run can stay on screen for a moment after the new run has finished."""
    from tests.test_texts import _other_language_in

    deadline = time.monotonic() + settle_seconds
    while True:
        other = _other_language_in(page.get_by_test_id("stApp").inner_text().splitlines(), language)
        if not other or time.monotonic() > deadline:
            return other
        time.sleep(0.5)


def test_f_the_language_switch_turns_every_page_into_the_other_language(browser, server):
    """Chinese, then English again: on every page no interface text of the other language shows
    (what people and datasets wrote aside; see tests/test_texts.py)."""
    page = open_page(browser, f"{server.url}/")
    sidebar = page.get_by_test_id("stSidebar")
    try:
        for language in ("zh", "en"):
            sidebar.get_by_text(texts.LANGUAGE_NAMES[language], exact=True).click()
            with texts.in_language(language):
                titles = [
                    texts.BASE_MODEL,
                    texts.TRAIN_TITLE,
                    texts.ADAPTERS_TITLE,
                    texts.PREFERENCE_TITLE,
                    texts.ROLES_TITLE,
                ]
                # while the rerun redraws the links under their new titles the sidebar can hold
                # none for a moment (seen once, with two workers): that is not yet an answer
                poll(
                    lambda: (links := our_navigation(page)) and links[0].endswith(texts.PAGE_CHAT),
                    60,
                    f"the {language} links",
                )
            for number, title in enumerate(titles):
                sidebar.get_by_test_id("stPageLink-NavLink").nth(number).click()
                poll(lambda title=title: page.get_by_text(title).count(), 60, f"{title!r}")
                wait_idle(page)
                other = _other_language_on(page, language)
                assert not other, (title, other)
    finally:
        sidebar.get_by_text(texts.LANGUAGE_NAMES["en"], exact=True).click()  # the next tests read English
        wait_idle(page)
        page.context.close()


def test_g_votes_on_a_persona_train_a_child_that_keeps_its_lineage(browser, tmp_path, tiny_model_dir):
    """Six blind votes on a persona adapter, the preference data built from them, a DPO job started
    from the page and watched to the end, and the child on the adapters page with its lineage and
    a one-click comparison with its parent. A server of its own: its only adapter is the persona."""
    from studio.roles import get_role
    from tests.e2e.conftest import StreamlitServer
    from training.data import pairs

    db = connect(tmp_path / "registry.db")
    base = f"local:{tiny_model_dir}"
    register_adapter(
        db, "huan", make_adapter(tiny_model_dir, tmp_path / "adapters" / "huan", 21), base, "persona"
    )
    env = {**os.environ, "TRANSLATOR_HOME": str(tmp_path), "TRANSLATOR_BASE_MODEL": str(tiny_model_dir)}
    fresh = StreamlitServer(tmp_path, env, tmp_path / "streamlit.log").start()
    try:
        page = open_page(browser, f"{fresh.url}/?adapter=huan")
        _set_max_new_tokens(page, 12)
        page.get_by_text(texts.MODES["compare"], exact=True).click()
        wait_idle(page)
        page.get_by_test_id("stCheckbox").filter(has_text=texts.BLIND).click()
        wait_idle(page)
        reveals = [
            texts.BLIND_REVEAL.format(a=a, b=b)
            for a, b in ((texts.BASE_ONLY, "huan"), ("huan", texts.BASE_ONLY))
        ]

        def revealed() -> bool:
            return any(page.get_by_text(reveal).count() for reveal in reveals)

        def vote_buttons() -> int:
            return page.get_by_role("button", name=texts.VOTE_A).count()

        for number in range(6):
            page.get_by_label(texts.COMPARE_PROMPT).fill(f"皇上今日可好？第{number + 1}问")
            page.get_by_role("button", name=texts.COMPARE_RUN).click()
            # the new round is on screen once its buttons show and the last round's reveal has gone
            poll(lambda: vote_buttons() and not revealed(), 60, f"round {number + 1}")
            wait_idle(page)
            page.get_by_role("button", name=texts.VOTE_A if number % 2 else texts.VOTE_B).click()
            poll(lambda n=number: db["votes"].count == n + 1, 30, f"vote {number + 1} stored")
            poll(lambda: revealed() and not vote_buttons(), 30, f"the names after vote {number + 1}")
            wait_idle(page)
        found = pairs.from_votes(db, base, "persona")
        assert len(found.records) + sum(found.skipped.values()) == 6 and found.records, found.skipped
        first_context = next(iter(db["votes"].rows))["first_context"]
        assert get_role(db, "persona").system_prompt in first_context, (
            "each vote keeps the role it was asked in"
        )

        page.goto(f"{fresh.url}/preferences?parent=huan")
        wait_idle(page)
        assert_our_navigation(page)
        found_text = texts.VOTES_FOUND.format(pairs=len(found.records), base=base, role="persona", up_to=6)
        poll(lambda: page.get_by_text(found_text).count(), 30, "the pairs built from the votes")
        # the preview comes after the count: it loads the base's tokenizer and tokenises every pair first
        poll(
            lambda: (
                page.get_by_text(texts.PAIR_CHOSEN).count() and page.get_by_text(texts.PAIR_REJECTED).count()
            ),
            60,
            lambda: (
                "the first pair as the model sees it; the page said: "
                + page.get_by_test_id("stMain").inner_text()[-1500:].replace("\n", " | ")
            ),
        )
        labels = texts.SETTING_LABELS
        for label, value in ((labels["max_steps"], 2), (labels["batch_size"], 1), (labels["grad_accum"], 1)):
            field = page.get_by_label(label)
            field.fill(str(value))
            field.press("Tab")
            wait_idle(page)
        page.get_by_role("button", name=texts.PREFERENCE_START).click()
        _wait_for_job_panel(page, "huan-dpo", "succeeded", 300)
        child = adapters.get(db, "huan-dpo")
        assert (child.parent_name, child.method, child.data_source["kind"]) == ("huan", "dpo", "votes")
        assert child.data_source["up_to_vote"] == 6 and child.role == "persona"

        page.goto(f"{fresh.url}/adapters")
        wait_idle(page)
        page.get_by_text(f"huan-dpo · persona · {base}").click()
        chain = (
            f"{base} ({texts.TRAINING_KINDS['base']}) → huan ({texts.TRAINING_KINDS['sft']}) → huan-dpo (DPO)"
        )
        poll(lambda: page.get_by_text(chain).count(), 30, "the lineage chain on the card")
        page.get_by_role("link", name=texts.COMPARE_WITH_PARENT.format(parent="huan")).click()
        wait_idle(page)
        chosen = page.get_by_test_id("stMultiSelect").first
        poll(lambda: "huan-dpo" in chosen.inner_text() and "huan\n" in chosen.inner_text() + "\n", 30, "both")
        assert page.get_by_role("button", name=texts.COMPARE_WITH_PARENT.format(parent="huan")).count() == 1
        page.context.close()
    finally:
        fresh.stop()
        stop_trainers(tmp_path)
    assert_no_traceback(fresh)
