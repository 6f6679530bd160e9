"""The preference page, the lineage on the adapter card and "compare with parent" in chat, driven
by Streamlit's AppTest against a real registry and the tiny model."""

import json

from core import home, texts
from registry import adapters
from studio import adapters as studio_adapters
from studio import blind
from studio.roles import get_role
from tests.conftest import make_adapter
from tests.test_pages import _app, app_env, navigation_as_on_a_running_server  # noqa: F401  (fixtures)
from training.jobs import lifecycle

PAGE = "pages/preferences.py"


def _vote(db, prompt: str, winner: str, answers=("good answer", "bad answer"), role="translator"):
    """A blind round between med-zh and huanhuan, both asked in `role`, and its vote."""
    med = adapters.get(db, "med-zh")
    context = blind.context(get_role(db, role), med.prompt_format)
    round_ = blind.Round(prompt, med.base_model, ("med-zh", "huanhuan"), answers, (context, context))
    blind.record(db, round_, winner)


def _texts_shown(app) -> str:
    parts = [
        e.value
        for kind in ("caption", "text", "info", "error", "success", "markdown")
        for e in getattr(app, kind)
    ]
    return "\n".join(str(part) for part in parts)


def test_votes_become_pairs_previewed_as_the_model_sees_them_with_what_was_skipped(app_env):  # noqa: F811
    _vote(app_env, "The patient has a fever.", "a")
    _vote(app_env, "Take two tablets daily.", "b", answers=("每天两片。", "每日服用两片药。"))
    _vote(app_env, "A tie says nothing.", "tie")
    app = _app(PAGE, parent="med-zh")
    assert app.selectbox(key="pref-parent").value == "med-zh", "the link chose the adapter to continue"
    app.radio(key="pref-source").set_value("votes").run()
    assert not app.exception, app.exception
    shown = _texts_shown(app)
    assert texts.VOTES_SKIPPED["tie"].format(count=1) in shown
    base = adapters.get(app_env, "med-zh").base_model
    assert texts.VOTES_FOUND.format(pairs=2, base=base, role="translator", up_to=3) in shown
    prompt = next(t.value for t in app.text if t.value.startswith(texts.PAIR_PROMPT))
    assert "The patient has a fever." in prompt, "the prompt is rebuilt in the role the vote was asked in"
    assert any(t.value.startswith(f"{texts.PAIR_CHOSEN}:\ngood answer") for t in app.text), (
        "the winner is chosen"
    )
    assert any(t.value.startswith(f"{texts.PAIR_REJECTED}:\nbad answer") for t in app.text)
    assert [b.proto.label for b in app.get("download_button")] == [texts.PAIRS_DOWNLOAD]
    rows = app.dataframe[0].value
    assert list(rows["prompt"]) == ["The patient has a fever.", "Take two tablets daily."]
    assert list(rows["chosen"]) == ["good answer", "每日服用两片药。"], "the second vote chose B"


def test_start_writes_the_votes_and_queues_a_job_continuing_the_parent(app_env, monkeypatch):  # noqa: F811
    from studio import supervisor

    monkeypatch.setattr(supervisor, "launch", lambda db, row, **kwargs: row)  # no detached trainer here
    _vote(app_env, "The patient has a fever.", "a")
    app = _app(PAGE, parent="med-zh")
    app.radio(key="pref-source").set_value("votes").run()
    assert app.text_input(key="pref-name-med-zh-dpo").value == "med-zh-dpo", "named after the parent"
    next(b for b in app.button if b.label == texts.PREFERENCE_START).click().run()
    assert not app.exception, app.exception
    (job,) = lifecycle.list_recent(app_env)
    assert job.adapter_name == "med-zh-dpo" and job.config["method"] == "dpo"
    assert (
        job.config["parent"] == "med-zh" and job.config["base"] == adapters.get(app_env, "med-zh").base_model
    )
    written = home.preference_data_dir() / job.config["data"].rsplit("/", 1)[-1]
    assert written.is_file() and written.name.startswith("votes-translator-upto1-")
    (row,) = [json.loads(line) for line in written.read_text(encoding="utf-8").splitlines()]
    assert row["chosen"] == [{"role": "assistant", "content": "good answer"}] and row["vote_id"] == 1
    later = _app(PAGE)  # a later visit, no ?job=: the newest preference job's panel
    assert any(f"#{job.id} · med-zh-dpo" in h.value for h in later.subheader), [
        h.value for h in later.subheader
    ]


def test_no_votes_no_parent_and_bad_files_each_say_what_to_do(app_env, tmp_path):  # noqa: F811
    app = _app(PAGE)
    app.radio(key="pref-source").set_value("votes").run()
    assert any(texts.ERR_NO_VOTE_PAIRS.split("{")[0] in i.value for i in app.info)
    start = next(b for b in app.button if b.label == texts.PREFERENCE_START)
    assert start.disabled, "nothing to train on: Start waits"
    app.radio(key="pref-source").set_value("mistakes").run()
    assert [i.value for i in app.info] == [texts.MISTAKES_NEED_PARENT]
    same = tmp_path / "same.jsonl"
    same.write_text(json.dumps({"prompt": "p", "chosen": "x", "rejected": "x"}) + "\n", encoding="utf-8")
    app.radio(key="pref-source").set_value("path").run()
    app.text_input(key="pref-path").input(str(same)).run()
    assert not app.exception, app.exception
    assert [e.value for e in app.error] == [texts.ERR_PAIRS_SAME.format(name="same.jsonl", number=1)], (
        "one clear message for the bad file"
    )


def test_the_sample_pairs_preview_for_kto_as_judged_answers_and_dpo_refuses_judged_data(app_env, tmp_path):  # noqa: F811
    app = _app(PAGE)
    app.radio(key="pref-source").set_value("sample").run()
    app.selectbox(key="pref-method").set_value("kto").run()
    assert not app.exception, app.exception
    assert any(t.value.startswith(texts.PAIR_DESIRABLE) for t in app.text), "KTO reads each answer judged"
    judged = tmp_path / "judged.jsonl"
    rows = [
        {"prompt": "p", "completion": "yes", "label": True},
        {"prompt": "q", "completion": "no", "label": False},
    ]
    judged.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    app.radio(key="pref-source").set_value("path").run()
    app.text_input(key="pref-path").input(str(judged)).run()
    app.selectbox(key="pref-method").set_value("dpo").run()
    assert texts.ERR_METHOD_NEEDS_PAIRS.format(method="DPO", name="judged.jsonl") in [
        e.value for e in app.error
    ]


def _register_dpo_child(db, folder, tiny_model_dir, seed: int, **fields):
    """med-zh-dpo, a registered DPO child of med-zh."""
    med = adapters.get(db, "med-zh")
    return studio_adapters.register(
        db,
        name="med-zh-dpo",
        role="translator",
        base_model=med.base_model,
        prompt_format=med.prompt_format,
        path=make_adapter(tiny_model_dir, folder, seed),
        hyperparameters={"lora_r": 4},
        parent_id=med.id,
        parent_name="med-zh",
        method="dpo",
        **fields,
    )


def test_the_card_shows_the_lineage_and_says_what_deleting_the_parent_does(app_env, home, tiny_model_dir):  # noqa: F811
    med = adapters.get(app_env, "med-zh")
    _register_dpo_child(
        app_env,
        home / "adapters" / "med-zh-dpo",
        tiny_model_dir,
        5,
        data_source={"kind": "votes", "up_to_vote": 7, "file": "votes.jsonl", "records": 6},
        metrics={"chosen_by": "accuracy", "chosen_score": 0.75, "checkpoint_step": 4},
    )
    app = _app("pages/adapters.py")
    assert not app.exception, app.exception
    lineage = next(
        frame.value
        for frame in app.dataframe
        if texts.LINEAGE_COLUMNS["training"] in frame.value.columns
        and "med-zh-dpo" in list(frame.value.iloc[:, 0])
    )
    column = texts.LINEAGE_COLUMNS
    assert list(lineage[column["adapter"]]) == [med.base_model, "med-zh", "med-zh-dpo"]
    assert list(lineage[column["training"]]) == [texts.TRAINING_KINDS[k] for k in ("base", "sft", "dpo")]
    assert lineage[column["data"]].iloc[2] == texts.DATA_FROM_VOTES.format(up_to=7, records=6)
    assert lineage[column["score"]].iloc[2] == "accuracy 0.75 @ 4"
    links = [link for link in app.get("page_link") if link.proto.label.startswith("⇄")]
    assert links and links[0].proto.label == texts.COMPARE_WITH_PARENT.format(parent="med-zh")

    app.checkbox(key="confirm-med-zh").check().run()
    said = [w.value for w in app.warning]
    assert texts.DELETE_KEEPS_CHILDREN.format(name="med-zh", children="med-zh-dpo") in said
    app.button(key="delete-med-zh").click().run()
    child = adapters.get(app_env, "med-zh-dpo")
    assert child.parent_id is None and child.parent_name == "med-zh", "the child keeps its parent's name"
    shown = studio_adapters.lineage_table(app_env, child)
    assert shown[1][column["adapter"]] == texts.LINEAGE_DELETED.format(name="med-zh")


def test_compare_with_parent_opens_compare_mode_with_child_and_parent(app_env, home, tiny_model_dir):  # noqa: F811
    _register_dpo_child(app_env, home / "adapters" / "med-zh-dpo", tiny_model_dir, 6)
    app = _app(None, adapter="med-zh-dpo", compare="med-zh")
    assert app.segmented_control(key="mode").value == "compare"
    assert app.multiselect(key="compare-with").value == ["med-zh-dpo", "med-zh"]
    app.multiselect(key="compare-with").set_value(["med-zh-dpo"]).run()
    app.button(key="compare-parent").click().run()  # the one-click way back
    assert app.multiselect(key="compare-with").value == ["med-zh-dpo", "med-zh"]
    app.toggle(key="blind").set_value(True).run()
    app.sidebar.toggle[0].set_value(False).run()
    for widget in app.sidebar.number_input:
        if widget.label == texts.MAX_NEW_TOKENS:
            widget.set_value(4)
    app.text_area(key="compare-prompt").input("Hello")
    app.button(key="compare-run").click().run()
    assert not app.exception, app.exception
    assert sorted(app.session_state["blind-round"].shown) == ["med-zh", "med-zh-dpo"], (
        "parent vs child, blind"
    )
