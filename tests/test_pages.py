"""Each page driven by Streamlit's AppTest against a real registry and the tiny model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import texts
from registry import adapters, connect, conversations, jobs
from studio import adapters as studio_adapters
from tests.conftest import (
    PROJECT_ROOT,
    adapter_row,
    make_adapter,
    register_adapter,
    use_running_server_navigation,
    wait_until,
)
from ui import common

ENTRY = str(PROJECT_ROOT / "翻译机器人.py")


@pytest.fixture(autouse=True)
def navigation_as_on_a_running_server(monkeypatch):
    use_running_server_navigation(monkeypatch)


@pytest.fixture
def app_env(home, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("TRANSLATOR_BASE_MODEL", str(tiny_model_dir))
    db = connect()
    base = f"local:{tiny_model_dir}"
    for name, role, seed in (("med-zh", "translator", 1), ("huanhuan", "persona", 2)):
        register_adapter(
            db, name, make_adapter(tiny_model_dir, home / "adapters" / name, seed), base, role=role
        )
    return db


def _app(page: str | None = None, **query) -> AppTest:
    app = AppTest.from_file(ENTRY, default_timeout=120)
    app.query_params.update(query)
    app.run()
    if page:
        app.switch_page(page).run()
    assert not app.exception, app.exception
    return app


def _shorten_replies(app: AppTest) -> None:
    for widget in app.sidebar.number_input:
        if widget.label == texts.MAX_NEW_TOKENS:
            widget.set_value(8)


def test_chat_uses_the_chosen_adapter_records_it_and_persists(app_env):
    app = _app()
    adapter_box = app.sidebar.selectbox(key="adapter_choice")
    groups, choice = texts.GROUPS, texts.ADAPTER_CHOICE
    assert adapter_box.options[0] == choice.format(group=groups["base"], name=texts.BASE_ONLY)
    assert adapter_box.options[1:] == [
        choice.format(group=groups["translator"], name="med-zh"),
        choice.format(group=groups["persona"], name="huanhuan"),
    ]
    adapter_box.select("med-zh").run()
    _shorten_replies(app)
    app.chat_input[0].set_value("The patient has a fever.").run()
    assert not app.exception, app.exception
    conversation = conversations.list_all(app_env)[0]
    stored = conversations.messages(app_env, conversation["id"])
    assert [m["role"] for m in stored] == ["user", "assistant"]
    reply = stored[1]
    assert reply["adapter"] == "med-zh" and reply["chat_role"] == "translator" and reply["content"]
    assert reply["settings"]["max_new_tokens"] == 8 and reply["settings"]["do_sample"] is False
    assert conversation["title"] == "The patient has a fever."

    reopened = _app(c=str(conversation["id"]))  # a new session, as after a reload or restart
    shown = [m.value for m in reopened.chat_message[1].markdown]
    assert reply["content"] in shown
    assert any("med-zh" in caption.value for caption in reopened.chat_message[1].caption)


def _send(app: AppTest, text: str) -> None:
    _shorten_replies(app)
    app.chat_input[0].set_value(text).run()
    assert not app.exception, app.exception


def test_the_first_visit_shows_the_base_model_conversion_and_later_visits_chat(app_env, monkeypatch):
    """On a fresh machine the built-in model is converted on the first visit (about a minute):
    each stage engine.models reports reaches a progress bar, which goes once the model is loaded;
    a later visit (a reload, a second tab) finds the loaded model and chats without an exception."""
    import streamlit as st
    from streamlit.delta_generator import DeltaGenerator

    from engine import resident
    from engine.generation import ChatEngine
    from tests.conftest import wait_until
    from ui import common

    shown = []
    real_progress = DeltaGenerator.progress

    def recorded(self, value, text=None, **kwargs):
        shown.append((value, text))
        return real_progress(self, value, text=text, **kwargs)

    stages = [
        (0.2, "Converting the built-in model: tokenizer"),
        (1.0, "Converting the built-in model: weights"),
    ]
    builds = []

    def converting(base_model, progress=None):
        builds.append(base_model)
        for fraction, stage in stages:
            progress(fraction, stage)
            wait_until(lambda stage=stage: any(text == stage for _, text in shown), what=f"{stage} drawn")
        return ChatEngine(base_model)

    monkeypatch.setattr(DeltaGenerator, "progress", recorded)  # bar.progress(...)
    monkeypatch.setattr(st, "progress", lambda *a, **k: recorded(st._main, *a, **k))  # the first bar
    monkeypatch.setattr(common, "ChatEngine", converting)
    monkeypatch.setattr(common, "CHAT_ENGINES", resident.Resident(max_entries=2))
    app = _app()
    assert shown == [(0.0, texts.LOADING_BASE), *stages], shown
    assert not app.get("progress"), "the bar stays after the model has loaded"

    shown.clear()
    for later_visit in (_app(), _app()):
        _send(later_visit, "hello again")
        assert later_visit.chat_message, "the later visit shows the chat"
    assert len(builds) == 1, "the model is built once for every visit"
    assert shown == [], "a loaded model shows no progress bar"


def test_conversations_are_saved_with_their_first_message_renamed_and_deleted(app_env):
    app = _app()
    assert conversations.list_all(app_env) == []  # a visit alone stores nothing
    _send(app, "first question")
    first = conversations.list_all(app_env)[0]["id"]
    assert app.sidebar.radio[0].value == first
    app.sidebar.button[0].click().run()  # new
    assert app.sidebar.radio[0].value is None and len(conversations.list_all(app_env)) == 1
    _send(app, "second question")
    newest = conversations.list_all(app_env)[0]["id"]
    assert newest != first and app.sidebar.radio[0].value == newest
    assert [m["content"] for m in conversations.messages(app_env, newest)][0] == "second question"
    app.text_input(key=f"title-{newest}").set_value("复诊").run()
    app.button(key=f"rename-{newest}").click().run()
    assert conversations.get(app_env, newest)["title"] == "复诊"
    app.button(key=f"delete-{newest}").click().run()
    assert [c["id"] for c in conversations.list_all(app_env)] == [first]


def test_a_second_visitor_starts_in_a_conversation_of_its_own(app_env):
    _send(_app(), "the first visitor's secret")
    other = _app()  # another browser, no ?c= in its URL
    shown = [m.value for message in other.chat_message for m in message.markdown]
    assert "the first visitor's secret" not in shown and other.sidebar.radio[0].value is None


def _greedy_replies(app_env, tiny_model_dir, prompt, names, sidebar_role):
    """What the engine itself answers for the base and each adapter (its own role), with the
    sidebar role's settings without sampling (the translator's two beams stay) and 8 tokens long,
    as the page sends them."""
    from engine.generation import ChatEngine
    from studio.roles import get_role

    engine = ChatEngine(str(tiny_model_dir), device="cpu")
    decoding = get_role(app_env, sidebar_role).decoding.with_changes(do_sample=False, max_new_tokens=8)
    replies = []
    for name in names:
        adapter = adapters.get(app_env, name) if name else None
        role = get_role(app_env, adapter.role if adapter else sidebar_role)
        replies.append(engine.reply(prompt, role=role, adapter=adapter, decoding=decoding).strip())
    return replies


def test_compare_mode_answers_with_the_base_and_two_adapters(app_env, tiny_model_dir):
    app = _app()
    _shorten_replies(app)
    app.sidebar.toggle[0].set_value(False).run()  # greedy, so the answers can be checked
    app.segmented_control(key="mode").set_value("compare").run()
    app.multiselect[0].set_value(["med-zh", "huanhuan"]).run()
    app.text_area(key="compare-prompt").input("Hello")
    assert app.button(key="compare-run").label not in app.segmented_control(key="mode").options
    app.button(key="compare-run").click().run()  # one click submits what was typed
    assert not app.exception, app.exception
    headers = [m.value for m in app.markdown if m.value.startswith("**")]
    assert len(headers) == 3 and "med-zh" in headers[1] and "huanhuan" in headers[2]
    assert texts.BASE_ONLY in headers[0]
    answers = [m.value.strip() for m in app.markdown if not m.value.startswith("**")][-3:]
    expected = _greedy_replies(app_env, tiny_model_dir, "Hello", [None, "med-zh", "huanhuan"], "assistant")
    assert answers == expected and len(set(expected)) == 3, (answers, expected)


def test_translate_box_appears_for_the_translator(app_env, tiny_model_dir):
    app = _app(adapter="med-zh")
    assert texts.MODES["translate"] in app.segmented_control(key="mode").options
    _shorten_replies(app)
    app.segmented_control(key="mode").set_value("translate").run()
    app.text_area(key="translate-input").input("fever\ncough")
    app.button(key="translate-run").click().run()
    assert not app.exception, app.exception
    shown = [m.value for m in app.markdown]
    at = shown.index(f"**{texts.TRANSLATE_OUTPUT}**")
    lines = [
        _greedy_replies(app_env, tiny_model_dir, line, ["med-zh"], "translator")[0]
        for line in ("fever", "cough")
    ]
    assert [text.strip() for text in shown[at + 1 : at + 3]] == lines


def test_train_form_rejects_bad_data_and_creates_no_job(app_env, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{", encoding="utf-8")
    app = _app("pages/train.py")
    app.radio[0].set_value("path").run()
    app.text_input[0].set_value(str(bad)).run()
    assert any("is not valid JSON" in e.value for e in app.error)
    app.text_input(key="adapter-name").set_value("new-one").run()
    app.button(key="train-start").click().run()
    assert any("is not valid JSON" in e.value for e in app.error)
    assert jobs.list_all(app_env) == []


def test_train_form_rejects_unsafe_and_taken_names(app_env):
    app = _app("pages/train.py")
    for name, message in (("../x", "is not allowed"), ("med-zh", "already exists")):
        app.text_input(key="adapter-name").set_value(name).run()
        app.button(key="train-start").click().run()
        assert any(message in e.value for e in app.error), [e.value for e in app.error]
    assert jobs.list_all(app_env) == []


def test_train_page_previews_the_first_example_and_truncation(app_env):
    app = _app("pages/train.py")
    texts_shown = [t.value for t in app.text]
    assert any(t.startswith(texts.PROMPT_PART) and "<|im_start|>assistant" in t for t in texts_shown)
    assert any(t.startswith(texts.TARGET_PART) for t in texts_shown)
    app.number_input(key="setting-max_length").set_value(110).run()
    from engine.roles import TRANSLATOR
    from training.data.datasets import load_dataset
    from training.data.preview import preview

    shown = preview(
        load_dataset(PROJECT_ROOT / "data" / "translator_sample.jsonl"),
        _tokenizer(),
        "chat_template",
        TRANSLATOR,
        110,
    )
    assert 0 < shown.num_truncated < len(shown.lengths)
    assert [w.value for w in app.warning] == [
        texts.TRUNCATED.format(count=shown.num_truncated, max_length=110)
    ]


def _tokenizer():
    import os

    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.environ["TRANSLATOR_BASE_MODEL"])


def test_upload_is_validated_and_saved_under_home(app_env, home):
    app = _app("pages/train.py")
    app.radio[0].set_value("upload").run()
    row = {"input": "fever", "output": "发烧"}
    content = json.dumps(row, ensure_ascii=False).encode()
    app.file_uploader[0].set_value(("../../my data.jsonl", content, "application/json")).run()
    assert not app.error, [e.value for e in app.error]
    saved = list((home / "uploads").glob("*.jsonl"))
    assert len(saved) == 1 and saved[0].name.startswith("my_data-")
    preview_titles = [e.label for e in app.expander if e.label.startswith(texts.PREVIEW)]
    assert preview_titles and "../../my data.jsonl" in preview_titles[0], preview_titles
    app.file_uploader[0].set_value(("broken.jsonl", b"{nope", "application/json")).run()
    assert any("line 1 is not valid JSON" in e.value for e in app.error)
    assert len(list((home / "uploads").glob("*"))) == 1
    app.text_input(key="adapter-name").set_value("from-upload").run()
    app.button(key="train-start").click().run()
    assert texts.UPLOAD_REJECTED in [e.value for e in app.error]
    assert texts.CHOOSE_DATA not in [e.value for e in app.error]


def test_start_refuses_what_the_trainer_would_refuse_and_creates_no_job(app_env, home):
    app = _app("pages/train.py")
    app.number_input(key="setting-max_length").set_value(8).run()
    app.text_input(key="adapter-name").set_value("too-short").run()
    app.button(key="train-start").click().run()
    assert any("is cut away at --max-length 8" in e.value for e in app.error), [e.value for e in app.error]
    assert jobs.list_all(app_env) == []
    assert not (home / "jobs").exists() or not any((home / "jobs").iterdir())
    assert not app.exception


@pytest.mark.slow
def test_start_on_a_large_file_shows_how_far_the_tokenising_got(app_env, home, tmp_path):
    import json

    rows = [{"input": f"The patient {n} has a fever.", "output": "患者发烧。"} for n in range(2500)]
    data = tmp_path / "large.jsonl"
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    app = _app("pages/train.py")
    app.radio(key="train-source").set_value("path").run()
    app.text_input(key="train-path").set_value(str(data)).run()
    app.number_input(key="setting-max_length").set_value(8).run()  # refused after tokenising: no trainer
    app.text_input(key="adapter-name").set_value("large").run()
    app.button(key="train-start").click().run()
    bars = [bar.proto.text for bar in app.get("progress")]
    assert bars and bars[-1].startswith("Tokenising large.jsonl: 2000/"), bars
    assert any("is cut away at --max-length 8" in e.value for e in app.error)


def test_adapters_page_renames_changes_role_deletes_and_flags_missing_folders(app_env, home):
    import shutil

    shutil.rmtree(home / "adapters" / "huanhuan")
    app = _app("pages/adapters.py")
    assert any("Folder missing" in w.value for w in app.warning)
    app.button(key="rename-med-zh").click().run()  # the same name: say so
    assert any("already called 'med-zh'" in e.value for e in app.error)
    app.text_input(key="name-med-zh").set_value("med-zh-2").run()
    app.button(key="rename-med-zh").click().run()
    assert adapters.get(app_env, "med-zh-2") is not None and (home / "adapters" / "med-zh-2").is_dir()
    app.selectbox(key="role-med-zh-2").set_value("persona").run()
    app.button(key="save-role-med-zh-2").click().run()
    assert adapters.get(app_env, "med-zh-2").role == "persona"
    assert app.button(key="delete-huanhuan").disabled
    app.checkbox(key="confirm-huanhuan").check().run()
    app.button(key="delete-huanhuan").click().run()
    assert adapters.get(app_env, "huanhuan") is None
    assert not app.exception, app.exception


def test_a_registry_write_that_fails_is_a_message_and_changes_nothing(app_env, home, monkeypatch):
    import sqlite3

    def locked(*args):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(type(app_env["adapters"]), "delete", locked)  # held past the busy timeout
    app = _app("pages/adapters.py")
    app.checkbox(key="confirm-med-zh").check().run()
    app.button(key="delete-med-zh").click().run()
    assert not app.exception, app.exception
    assert [e.value for e in app.error] == [texts.ERR_REGISTRY_WRITE.format(error="database is locked")]
    assert adapters.get(app_env, "med-zh") is not None and (home / "adapters" / "med-zh").is_dir()


def test_adapters_page_evaluates_in_a_detached_task_with_progress_and_shows_the_gain(app_env, tmp_path):
    from registry import evaluations
    from serving import tasks

    data = tmp_path / "eval.jsonl"
    rows = [
        {"input": "fever", "output": "发烧"},
        {"input": "cough", "output": "咳嗽"},
        {"input": "pain", "output": "疼痛"},
    ]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    app = _app("pages/adapters.py")
    app.text_input(key="eval-data-med-zh").set_value(str(data))
    app.number_input(key="eval-limit-med-zh").set_value(3)
    app.button(key="evaluate-run-med-zh").click().run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    (task,) = tasks.list_recent(app_env, kind="evaluate")
    assert any(f"Evaluation #{task.id}" in info.value for info in app.info)  # its progress, with Stop
    assert app.button(key=f"evaluate-stop-{task.id}")
    ended = wait_until(
        lambda: (t := tasks.get(app_env, task.id)).status not in ("queued", "running") and t,
        what="the evaluation",
    )
    assert ended.status == "succeeded", (ended.error, tasks.log_tail(ended))
    app = _app("pages/adapters.py")
    med = adapters.get(app_env, "med-zh")
    stored = evaluations.for_adapter(app_env, med.id)
    assert len(stored) == 1 and evaluations.base_counterpart(app_env, stored[0]) is not None
    assert any("gain bleu" in frame.value.columns for frame in app.dataframe)

    chat = _app(adapter="med-zh")
    chat.segmented_control(key="mode").set_value("compare").run()
    chat.selectbox(key="compare-example").set_value("fever").run()
    assert chat.text_area(key="compare-prompt").value == "fever"
    assert any(f"{texts.REFERENCE}: 发烧" in c.value for c in chat.caption)

    # an adapter with evaluations (as every demo adapter has) deletes cleanly, scores and all
    app = _app("pages/adapters.py")
    app.checkbox(key="confirm-med-zh").check().run()
    app.button(key="delete-med-zh").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert adapters.get(app_env, "med-zh") is None
    assert evaluations.for_adapter(app_env, med.id) == [] and not Path(stored[0].predictions_path).exists()


def _ended(task):
    return task if task.status not in ("queued", "running") else None


def test_the_chat_sidebar_rules_follow_links_once_and_never_open_someone_elses_conversation():
    from studio.conversation import adapter_from_link, adapters_for_base, base_choices, conversation_to_open

    rows = [
        adapter_row(name="p", role="persona", base_model="builtin"),
        adapter_row(name="t", role="translator", base_model="builtin"),
        adapter_row(name="y", role="translator", base_model="local:/yuan"),
        adapter_row(name="c", role="poet", base_model="builtin"),
    ]
    assert base_choices("local:/yuan", rows) == ["local:/yuan", "builtin:gemma3-270m", "builtin"]
    assert [a.name for a in adapters_for_base(rows, "builtin")] == ["t", "p", "c"]
    assert adapter_from_link("y", rows, None).base_model == "local:/yuan"
    assert adapter_from_link("y", rows, "y") is None, "a link selects once; then the sidebar is the user's"
    assert adapter_from_link("gone", rows, None) is None and adapter_from_link("", rows, None) is None
    ids = [3, 5]
    assert conversation_to_open(None, True, "5", ids) == 5, "a first visit opens its link"
    assert (
        conversation_to_open(None, True, "9", ids) is None
        and conversation_to_open(None, True, "", ids) is None
    )
    assert conversation_to_open(None, False, "5", ids) is None, "a new conversation stays new"
    assert conversation_to_open(3, False, "5", ids) == 3
    assert conversation_to_open(4, False, "5", ids) == 5, "a deleted conversation falls back to the link"


def test_a_blind_comparison_hides_the_names_until_the_vote_and_records_it(app_env, tiny_model_dir):
    from studio import blind

    app = _app()
    _shorten_replies(app)
    app.sidebar.toggle[0].set_value(False).run()  # greedy: the answers can be matched to their makers
    app.segmented_control(key="mode").set_value("compare").run()
    app.multiselect[0].set_value(["med-zh"]).run()  # one adapter: it faces the base model
    app.toggle(key="blind").set_value(True).run()
    app.text_area(key="compare-prompt").input("Hello")
    app.button(key="compare-run").click().run()
    assert not app.exception, app.exception
    shown_text = " ".join(m.value for m in app.markdown)
    assert "med-zh" not in shown_text and texts.BASE_ONLY not in shown_text, "names stay hidden"
    round_ = app.session_state["blind-round"]
    assert sorted(round_.shown) == ["", "med-zh"] and round_.prompt == "Hello"
    replies = _greedy_replies(app_env, tiny_model_dir, "Hello", [None, "med-zh"], "assistant")
    expected = dict(zip(["", "med-zh"], replies, strict=True))
    assert [answer.strip() for answer in round_.answers] == [expected[name] for name in round_.shown]
    app.button(key="vote-a").click().run()
    assert not app.exception, app.exception
    stored = list(app_env["votes"].rows)
    assert len(stored) == 1 and (stored[0]["first"], stored[0]["second"]) == ("", "med-zh")
    assert stored[0]["winner"] == ("first" if round_.shown[0] == "" else "second")
    assert any("med-zh" in s.value for s in app.success), "the names are revealed after the vote"
    assert blind.standings(app_env)[0]["votes"] == 1
    assert not [button for button in app.button if button.key == "vote-b"], "one vote per round"


def test_votes_add_up_per_pair_follow_renames_and_go_with_a_deleted_adapter(app_env):
    import random

    from studio import blind

    orders = {blind.draw_order("x", "y", random.Random(seed)) for seed in range(20)}
    assert orders == {("x", "y"), ("y", "x")}, "either answer may come first"
    base = adapters.get(app_env, "med-zh").base_model
    rounds = [
        (blind.Round("p", base, ("med-zh", "huanhuan"), ("m", "h")), "a"),  # med-zh wins
        (blind.Round("p", base, ("huanhuan", "med-zh"), ("h", "m")), "b"),  # med-zh wins
        (blind.Round("p", base, ("huanhuan", "med-zh"), ("h", "m")), "a"),  # huanhuan wins
        (blind.Round("p", base, ("med-zh", "huanhuan"), ("m", "h")), "tie"),
    ]
    for round_, choice in rounds:
        blind.record(app_env, round_, choice)
    (row,) = blind.standings(app_env)
    assert (row["first"], row["second"]) == ("huanhuan", "med-zh")
    assert (row["first_wins"], row["second_wins"], row["ties"], row["votes"]) == (1, 2, 1, 4)
    assert row["first_rate"] == pytest.approx(1 / 3) and row["low"] < 1 / 3 < row["high"]
    low, high = blind.wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)  # the textbook Wilson interval
    assert blind.wilson_interval(0, 0) == (0.0, 1.0)
    first_answers = {v["winner"]: v["first_answer"] for v in app_env["votes"].rows}
    assert first_answers["first"] == "h" and first_answers["second"] == "h", "answers stay with names"

    studio_adapters.rename(app_env, "med-zh", "a-med")  # now sorts before huanhuan: sides swap
    (row,) = blind.standings(app_env)
    assert (row["first"], row["second"], row["first_wins"], row["second_wins"]) == ("a-med", "huanhuan", 2, 1)
    assert all(v["first_answer"] == "m" for v in app_env["votes"].rows if v["winner"] != "tie")
    studio_adapters.delete(app_env, "a-med")
    assert blind.standings(app_env) == [] and app_env["votes"].count == 0


def test_contenders_answer_in_their_own_roles(app_env):
    from engine.roles import ASSISTANT, PERSONA
    from studio import blind
    from studio.conversation import answering_role

    assert blind.contenders(["med-zh"]) == ("med-zh", "") and blind.contenders(["a", "b"]) == ("a", "b")
    assert answering_role(app_env, None, ASSISTANT) is ASSISTANT, "the base answers in the sidebar's role"
    assert answering_role(app_env, adapters.get(app_env, "huanhuan"), ASSISTANT) == PERSONA
    assert answering_role(app_env, adapter_row(name="x", role="a-deleted-role"), ASSISTANT) is ASSISTANT


def test_the_devices_section_shows_the_exact_launch_command_and_batch_sizes(app_env, monkeypatch):
    monkeypatch.setenv("TRANSLATOR_GPUS", "")  # a machine without GPUs: CPU processes
    app = _app("pages/train.py")
    assert texts.NO_GPU_FOUND in [c.value for c in app.caption]
    app.text_input(key="adapter-name").set_value("two-procs").run()
    app.number_input(key="setting-processes").set_value(2).run()
    command = next(c.value for c in app.code if c.value.startswith("torchrun"))
    assert "torchrun --standalone --nproc-per-node 2 -m training.train" in command
    assert "--name two-procs" in command and "translator_sample.jsonl" in command
    assert texts.BATCH_SIZES.format(per_device=16, total=32, processes=2) in [c.value for c in app.caption]

    app.number_input(key="train-nodes").set_value(2).run()
    app.text_input(key="train-host").set_value("gpu-head").run()
    codes = [c.value for c in app.code]
    assert sum("--node-rank" in c and "--master-addr gpu-head --master-port 29500" in c for c in codes) == 2
    assert any("#SBATCH --nodes=2" in c for c in codes)
    assert texts.SQLITE_LOCAL in [c.value for c in app.caption]
    assert texts.BATCH_SIZES.format(per_device=16, total=64, processes=4) in [c.value for c in app.caption]
    assert not app.exception


def test_rendering_every_page_writes_nothing_even_where_runs_died(app_env, home):
    """Reading never writes: a job and an export whose processes are gone read as interrupted on
    every page, and the registry file and the home folder are byte for byte as they were (the
    server's Reconciler, off in tests, is the one that writes their end)."""
    from registry import tasks as task_rows
    from studio import supervisor

    db = app_env
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = {"status": "running", "pid": dead.pid, "pid_started": 1}
    job = jobs.create(db, adapter_name="half", config={}, **gone)
    supervisor.job_staging_folder("half", job.id).mkdir(parents=True)
    export = task_rows.create(db, kind="merge", adapter_name="med-zh", settings={})
    task_rows.update(db, export.id, **gone)
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in registry.db itself
    before = _snapshot(home)
    for page, _title, _icon, _path in common.PAGES:
        _app(page)
    assert _snapshot(home) == before
    assert jobs.get(db, job.id).status == "running"  # not written down by a page


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under `folder`; SQLite's -wal and -shm files,
    which a reader's connection opens, are left out: the rows live in registry.db."""
    return {
        str(path.relative_to(folder)): path.read_bytes() if path.is_file() else None
        for path in sorted(folder.rglob("*"))
        if not path.name.endswith(("-wal", "-shm"))
    }
