"""One texts module, two languages: every text exists in both with the same fields, every text the
code asks for exists, engine errors speak the chosen language, and each page renders whole in both."""

import ast
import re
import string
from dataclasses import replace

import pytest

from core import texts
from core.errors import UserError
from tests.conftest import PROJECT_ROOT, adapter_row, job_row
from tests.test_pages import ENTRY, app_env, navigation_as_on_a_running_server  # noqa: F401  (fixtures)

CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
# Data rather than interface (with the built-in roles' system prompts and the bundled samples, see
# _without_data): the product's name, each language's own name on the switch, and the default title
# of an unnamed conversation.
NOT_INTERFACE = {"翻译机器人", "中文", "新对话"}


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    else:
        yield path, value


def _fields(template: str) -> set[str]:
    return {field.split("!")[0] for _, field, _, _ in string.Formatter().parse(template) if field}


def test_every_text_exists_in_both_languages_with_the_same_fields():
    assert texts.names(), "no texts"
    for name in texts.names():
        for path, pair in _leaves(texts.entry(name)):
            where = ".".join((name, *map(str, path)))
            assert isinstance(pair, tuple) and len(pair) == len(texts.LANGUAGES), where
            chinese, english = pair
            assert chinese.strip() and english.strip(), f"{where} is empty in one language"
            assert _fields(chinese) == _fields(english), f"{where}: the two languages take different fields"


def test_english_texts_hold_no_chinese_and_chinese_texts_are_chinese():
    for name in texts.names():
        for path, (chinese, english) in _leaves(texts.entry(name)):
            where = ".".join((name, *map(str, path)))
            assert not CJK.search(english.replace("翻译机器人", "")), f"{where} has Chinese in English"
            letters = re.sub(r"\{[^}]*\}|[^A-Za-z]", "", chinese)
            if len(re.sub(r"\{[^}]*\}", "", english)) > 12 and chinese == english:
                pytest.fail(f"{where} is not translated")
            assert CJK.search(chinese) or len(letters) <= 16, f"{where} reads as English in Chinese"


def _code(node) -> str | None:
    """The text a message names: "NAME" or "NAME.key" as written, or the fixed start of an f-string
    ("NAME." of f"NAME.{key}")."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return node.values[0].value
    return None


def _texts_the_code_asks_for() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(where, NAME) of each `texts.NAME`, and (where, code) of each message by code: the first
    argument of UserError(...) or Message(...) and a run kind's `gone=` (and any other string that
    is exactly a text's name, as used)."""
    asked, coded = set(), set()
    for path in PROJECT_ROOT.rglob("*.py"):
        if path.relative_to(PROJECT_ROOT).parts[0] in ("tests", ".venv", "bench", "workspace"):
            continue
        where = str(path.relative_to(PROJECT_ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "texts"
            ):
                asked.add((where, node.attr))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in texts.names():
                asked.add((where, node.value))  # a code chosen before the message is made
            if isinstance(node, ast.Call):
                called = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if called in ("UserError", "Message") and node.args:
                    code = _code(node.args[0])
                    if code and code.split(".")[0].isupper():
                        coded.add((where, code))
                coded |= {
                    (where, _code(k.value)) for k in node.keywords if k.arg == "gone" and _code(k.value)
                }
    return asked, coded


def test_every_text_the_code_asks_for_exists_and_every_text_is_used():
    asked, coded = _texts_the_code_asks_for()
    assert coded, "no message by code found: the walk above no longer sees how the code raises"
    helpers = {name for name in dir(texts) if not name.startswith("_")}
    missing = sorted(
        (where, name) for where, name in asked if name not in texts.names() and name not in helpers
    )
    missing += sorted(
        (where, code)
        for where, code in coded
        if not (
            texts.known(code) or (code[:-1] in texts.names() and isinstance(texts.entry(code[:-1]), dict))
        )
    )
    assert not missing, missing
    asked |= {(where, code.split(".")[0]) for where, code in coded}
    used = {name for _, name in asked}
    page_titles = {title for _, title, _, _ in __import__("ui.common", fromlist=["PAGES"]).PAGES}
    unused = sorted(set(texts.names()) - used - page_titles)
    assert not unused, f"texts nobody shows: {unused}"


def test_the_language_follows_the_choice_then_the_environment_then_chinese(monkeypatch):
    monkeypatch.delenv("TRANSLATOR_LANG")
    assert texts.default_language() == "zh" and texts.current() == "zh"
    assert texts.START == "🚀 开始训练"
    monkeypatch.setenv("TRANSLATOR_LANG", "en_US.UTF-8")
    assert texts.START == "🚀 Start training"
    with texts.in_language("zh"):
        assert texts.STATUS["failed"] == "失败"
    assert texts.STATUS["failed"] == "failed"
    with pytest.raises(AttributeError, match="no text 'NO_SUCH_TEXT'"):
        _ = texts.NO_SUCH_TEXT


@pytest.mark.parametrize(
    "language, expected",
    [("zh", "找不到数据文件"), ("en", "Dataset file not found")],
)
def test_errors_from_deep_inside_speak_the_readers_language_not_the_raisers(tmp_path, language, expected):
    from core.names import check_name
    from training.data.datasets import load_dataset, parse_dataset

    raised_in = "en" if language == "zh" else "zh"
    with texts.in_language(raised_in):
        with pytest.raises(UserError) as missing:
            load_dataset(tmp_path / "missing.jsonl")
        with pytest.raises(UserError) as not_utf8:
            parse_dataset("é".encode("gbk"), ".jsonl", name="broken_gbk.jsonl")
        with pytest.raises(UserError) as empty_name:
            check_name("", "adapter")
    with texts.in_language(language):
        assert expected in str(missing.value)
        for error in (not_utf8.value, empty_name.value):
            assert bool(CJK.search(str(error))) == (language == "zh"), str(error)
            assert error.message is not None, f"{error} is a plain sentence, not a message by code"


# --- each page, whole, in both languages ----------------------------------------------------------


def _strings(message) -> list[str]:
    found = []
    for _, value in message.ListFields():
        single = isinstance(value, str | bytes | int | float) or hasattr(value, "ListFields")
        for item in [value] if single else list(value):
            if isinstance(item, str):
                found.append(item)
            elif hasattr(item, "ListFields"):
                found.extend(_strings(item))
    return found


def _shown(node) -> list[str]:
    found = _strings(node.proto) if getattr(node, "proto", None) is not None else []
    for child in getattr(node, "children", {}).values():
        found.extend(_shown(child))
    return found


def _other_language_in(shown: list[str], language: str) -> list[str]:
    if language == "en":
        return [text for text in shown if CJK.search(_without_data(text))]
    english = {
        english
        for name in texts.names()
        for _, (chinese, english) in _leaves(texts.entry(name))
        if chinese != english and len(re.sub(r"\{[^}]*\}", "", english)) > 12
    }
    sentences = {part.strip() for sentence in english for part in re.split(r"\{[^}]*\}", sentence)}
    sentences = {part for part in sentences if len(part) > 12}
    return sorted({part for text in shown for part in sentences if part in text})


def _without_data(text: str) -> str:
    """The text less what people and datasets wrote (the bundled samples are EN→ZH pairs)."""
    from engine.roles import BUILTIN_ROLES
    from training.data import pairs
    from training.data.datasets import load_dataset
    from training.jobs.lifecycle import PREFERENCE_SAMPLES, SAMPLES

    rows = [row for path in SAMPLES.values() for row in load_dataset(path).records]
    rows += [row for path in PREFERENCE_SAMPLES.values() for row in pairs.load(path).records]
    written = [*NOT_INTERFACE, *(value for row in rows for value in row.values() if isinstance(value, str))]
    written += [role.system_prompt for role in BUILTIN_ROLES.values()]
    for data in sorted(filter(None, written), key=len, reverse=True):
        text = text.replace(data, "")
    return text


@pytest.mark.parametrize("language", texts.LANGUAGES)
@pytest.mark.parametrize(
    "page",
    [
        "pages/chat.py",
        "pages/train.py",
        "pages/adapters.py",
        "pages/roles.py",
        "pages/preferences.py",
        "pages/rewards.py",
    ],
)
def test_each_page_renders_whole_in_each_language(app_env, page, language):  # noqa: F811
    from streamlit.testing.v1 import AppTest

    with texts.in_language(language):  # AppTest formats options in this thread too
        app = AppTest.from_file(ENTRY, default_timeout=120)
        app.session_state["language"] = language
        app.run()
        app.switch_page(page).run()
        assert not app.exception, app.exception
        shown = _shown(app._tree)
        title = {
            "pages/chat.py": texts.BASE_MODEL,
            "pages/train.py": texts.TRAIN_TITLE,
            "pages/adapters.py": texts.ADAPTERS_TITLE,
            "pages/roles.py": texts.ROLES_TITLE,
            "pages/preferences.py": texts.PREFERENCE_TITLE,
            "pages/rewards.py": texts.GRPO_TITLE,
        }[page]
        links = [
            texts.PAGE_CHAT,
            texts.PAGE_TRAIN,
            texts.PAGE_ADAPTERS,
            texts.PAGE_PREFERENCES,
            texts.PAGE_REWARDS,
            texts.PAGE_ROLES,
        ]
    assert title in shown, f"{title!r} not on {page}"
    assert all(link in shown for link in links), links
    assert not _other_language_in(shown, language), _other_language_in(shown, language)


def test_the_switch_changes_the_language_at_once_and_the_next_visit_keeps_it(app_env):  # noqa: F811
    from streamlit.testing.v1 import AppTest

    from registry import preferences

    with texts.in_language("zh"):
        first = AppTest.from_file(ENTRY, default_timeout=120)
        first.session_state["language"] = "zh"
        first.run()
        assert first.sidebar.segmented_control(key="language").options == ["中文", "English"]
        assert any(link.label == "训练" for link in first.sidebar.get("page_link"))
        # (AppTest re-formats the widgets it holds in this thread: those were drawn in Chinese)
        first.sidebar.segmented_control(key="language").set_value("en").run()
    assert not first.exception, first.exception
    assert any(link.label == "Train" for link in first.sidebar.get("page_link"))
    assert preferences.get(app_env, "language") == "en"
    with texts.in_language("zh"):
        preferences.put(app_env, "language", "zh")
        later = AppTest.from_file(ENTRY, default_timeout=120)  # a new tab: no session state yet
        later.run()
        assert any(link.label == "训练" for link in later.sidebar.get("page_link"))


def test_a_message_keeps_its_code_and_fields_through_a_row_a_pickle_and_an_error_inside_one(db):
    import pickle

    from core.errors import message_of
    from registry import jobs

    inner = UserError("ERR_DATA_MISSING", path="/data/x.jsonl")
    outer = UserError("ERR_RANK_LOST", error=message_of(inner))
    copied = pickle.loads(pickle.dumps(outer))
    assert copied.message == outer.message and type(copied) is UserError
    for language, words in (("zh", "找不到数据文件"), ("en", "Dataset file not found")):
        with texts.in_language(language):
            assert words in str(copied) and "/data/x.jsonl" in str(copied)
    waiting = jobs.create(db, adapter_name="waits", config={})
    with texts.in_language("zh"):
        jobs.update(db, waiting.id, waiting_for=texts.Message("WAITING_FOR_CPU"))
        assert jobs.mark_interrupted(db, waiting.id, None, outer.message)
    with texts.in_language("en"):
        row = jobs.get(db, waiting.id)
        assert "Dataset file not found" in row.error and not CJK.search(row.error + row.waiting_for)
    with texts.in_language("zh"):
        assert "找不到数据文件" in jobs.get(db, waiting.id).error
    # a code this version no longer has still reads as something: its name and its fields
    gone = texts.Message("ERR_RETIRED_LONG_AGO", {"path": "/x"})
    assert str(gone) == "ERR_RETIRED_LONG_AGO(path=/x)"
    assert texts.Message.from_json(gone.as_json()) == gone
    with pytest.raises(ValueError, match="not a text"):
        UserError("a plain sentence with {fields}", fields=1)


def test_a_job_that_failed_in_chinese_reads_in_english_after_the_switch_and_in_the_cli(
    app_env,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """The trainer of a job started from the Chinese page fails deep inside; its row keeps the
    message's code, so the panel reads it in English once the reader switches, and so does the
    runs CLI under TRANSLATOR_LANG=en. A row from before the codes keeps its stored sentence."""
    from streamlit.testing.v1 import AppTest

    from registry import jobs
    from tests.conftest import run_module
    from training import train

    db = app_env
    job = jobs.create(
        db, adapter_name="zh-failed", config={"name": "zh-failed", "data": str(tmp_path / "x.json")}
    )
    with texts.in_language("zh"):  # the language the page hands the trainer it starts
        assert train.main(["--job-id", str(job.id)]) == 2
    stored = db["jobs"].get(job.id)
    assert "找不到数据文件" in stored["error"] and "ERR_DATA_MISSING" in stored["error_message"]
    older = jobs.create(db, adapter_name="older", config={})
    jobs.finish(db, older.id, "failed", error="written before the codes")

    with texts.in_language("zh"):
        app = AppTest.from_file(ENTRY, default_timeout=120)
        app.session_state["language"] = "zh"
        app.query_params["job"] = str(job.id)
        app.run()
        app.switch_page("pages/train.py").run()
        assert any("找不到数据文件" in error.value for error in app.error), [e.value for e in app.error]
        app.sidebar.segmented_control(key="language").set_value("en").run()
    assert not app.exception, app.exception
    shown = [error.value for error in app.error]
    assert any("Dataset file not found" in text for text in shown), shown
    assert not any(CJK.search(text) for text in shown), shown

    def runs_cli(language: str) -> str:
        monkeypatch.setenv("TRANSLATOR_LANG", language)
        listed = run_module("studio.runs")
        assert listed.returncode == 0, listed.stderr
        return listed.stdout

    english, chinese = runs_cli("en"), runs_cli("zh")
    assert f"job {job.id}" in english and "failed" in english and "Dataset file not found" in english
    assert "失败" in chinese and "找不到数据文件" in chinese
    assert "written before the codes" in english and "written before the codes" in chinese


def test_page_helpers_speak_the_chosen_language():
    from engine.catalogue import model_label
    from studio.conversation import adapter_label
    from training.evaluation.scores import score_chart_rows, with_headers
    from training.jobs.panel import job_view, timer_is_stale

    usable = [adapter_row(name="med", role="translator"), adapter_row(name="mine", role="poet")]
    job = job_row(
        id=7,
        adapter_name="med",
        status="running",
        total_steps=40,
        step=10,
        loss=1.23456,
        tokens_per_second=812.4,
        eta_seconds=95.2,
        learning_rate=1e-4,
        error=None,
    )
    table = [
        {
            "dataset": "dev.jsonl [abc]",
            "n": 20,
            "bleu": 12.5,
            "chrf": 20.0,
            "base bleu": 1.0,
            "gain bleu": 11.5,
        }
    ]
    with texts.in_language("zh"):
        assert adapter_label("", usable) == "【基座】仅基座（不加适配器）"
        assert adapter_label("mine", usable) == "【自定义】mine"
        assert model_label("builtin") == "SmolLM2-135M-Instruct（内置，离线可用，英文对话）· builtin"
        view = job_view(job)
        assert view.heading == "训练任务 #7 · med · 训练中" and view.progress == "第 10/40 步"
        assert (view.fraction, view.loss, view.speed, view.eta) == (0.25, "1.2346", "812", "95 秒")
        assert view.active and not view.resumable and not view.succeeded and view.failed_with == ""
        assert list(with_headers(table)[0]) == ["数据", "样本数", "bleu", "chrf", "基座 bleu", "提升 bleu"]
    with texts.in_language("en"):
        assert adapter_label("med", usable) == "[Translator] med"
        assert model_label("/some/folder") == "/some/folder"
        assert job_view(replace(job, status="failed", error="boom", eta_seconds=None)).failed_with == "boom"
        assert job_view(replace(job, total_steps=0)).progress == "step 10/?"
        assert list(with_headers(table)[0])[-2:] == ["base bleu", "gain bleu"]
    assert timer_is_stale(replace(job, status="succeeded"), "running")
    assert timer_is_stale(replace(job, status="queued"), "failed"), "resumed: the panel needs its timer again"
    assert not timer_is_stale(job, "running") and not timer_is_stale(replace(job, status="failed"), "failed")
    rows = score_chart_rows(table, metric="M", adapter="A", base="B")
    assert rows == [
        {"M": "bleu · dev.jsonl", "A": 12.5, "B": 1.0},
        {"M": "chrf · dev.jsonl", "A": 20.0, "B": 0.0},
    ]


def test_switching_the_language_keeps_what_the_form_holds(app_env):  # noqa: F811
    from streamlit.testing.v1 import AppTest

    with texts.in_language("zh"):
        app = AppTest.from_file(ENTRY, default_timeout=120)
        app.session_state["language"] = "zh"
        app.run()
        app.switch_page("pages/train.py").run()
        app.radio(key="train-source").set_value("path").run()
        app.text_input(key="train-path").input("no/such.jsonl").run()
        assert "找不到数据文件" in app.error[0].value
        app.sidebar.segmented_control(key="language").set_value("en").run()
    assert not app.exception, app.exception
    assert app.text_input(key="train-path").value == "no/such.jsonl"
    assert app.radio(key="train-source").value == "path"
    assert "Dataset file not found" in app.error[0].value


def test_a_reply_s_provenance_names_how_it_was_decoded():
    from studio.conversation import provenance

    def said(**settings):
        settings = {"repetition_penalty": 1.0, **settings}
        return provenance({"adapter": "med", "chat_role": "translator", "settings": settings})

    with texts.in_language("en"):
        assert said(num_beams=2, max_new_tokens=256) == "med · translator · 2 beams rep=1.0 · max 256 tokens"
        assert said(num_beams=1) == "med · translator · greedy rep=1.0"
        assert said(num_beams=1, mbr_samples=8).startswith("med · translator · MBR of 8 ")
        sampled = said(do_sample=True, temperature=0.5, top_p=0.9)
        assert sampled == "med · translator · T=0.5 top_p=0.9 rep=1.0"
    with texts.in_language("zh"):
        assert "2 束搜索" in said(num_beams=2)
