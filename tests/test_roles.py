"""Custom roles: made on the roles page, used to train, chat and evaluate, protected while in use."""

import pytest
from streamlit.testing.v1 import AppTest

from core import texts
from core.errors import UserError
from engine.roles import DECODING_LIMITS, Decoding, Role, check_decoding
from registry import adapters, jobs
from studio.roles import delete_custom_role, get_role, save_custom_role
from tests.conftest import PROJECT_ROOT, TINY_TRAINING, lora_folder, register_adapter
from tests.test_pages import navigation_as_on_a_running_server  # noqa: F401  (autouse fixture)
from training import train

ENTRY = str(PROJECT_ROOT / "翻译机器人.py")
SAMPLE = PROJECT_ROOT / "data" / "translator_sample.jsonl"
MEDIATOR = Role(
    name="mediator",
    title="医患沟通 mediator",
    system_prompt="你是医生和病人之间的翻译。",
    decoding=Decoding(do_sample=True, temperature=0.3, top_p=0.8, repetition_penalty=1.2, max_new_tokens=16),
    prompt_format="plain",
    metric="translation",
    uses_history=False,
)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "translator"}, "is a built-in role"),
        ({"name": "../x"}, "role name '../x' is not allowed"),
        ({"prompt_format": "alpaca"}, "Prompt format 'alpaca' is unknown"),
        ({"metric": "rouge"}, "Metric 'rouge' is unknown"),
        ({"decoding": Decoding(do_sample=True, temperature=0.0)}, "temperature must be above 0"),
        ({"decoding": Decoding(max_new_tokens=0)}, "max new tokens must be at least 1"),
        ({"decoding": Decoding(num_beams=12)}, "beams must be a whole number from 1 to 8"),
        ({"decoding": Decoding(do_sample=True, num_beams=4)}, "does not go with sampling"),
    ],
)
def test_a_role_with_a_bad_field_is_refused_and_not_stored(db, changes, message):
    from dataclasses import replace

    with pytest.raises(UserError, match=message):
        save_custom_role(db, replace(MEDIATOR, **changes))
    assert db["roles"].count == 0


def test_a_role_in_use_cannot_be_deleted_and_the_refusal_names_its_users(db, home):
    save_custom_role(db, MEDIATOR)
    assert get_role(db, "mediator") == MEDIATOR
    register_adapter(db, "uses-it", lora_folder(home / "adapters" / "uses-it"), "builtin", role="mediator")
    jobs.create(db, adapter_name="next", config={}, role="mediator", status="running")
    with pytest.raises(UserError, match="used by uses-it, job 1"):
        delete_custom_role(db, "mediator")
    with pytest.raises(UserError, match="built-in role and cannot be deleted"):
        delete_custom_role(db, "persona")
    adapters.set_role(db, "uses-it", "translator")
    jobs.finish(db, 1, "cancelled")
    assert delete_custom_role(db, "mediator") == "mediator"
    with pytest.raises(UserError, match="Unknown role 'mediator'"):
        get_role(db, "mediator")


def _app(page: str) -> AppTest:
    app = AppTest.from_file(ENTRY, default_timeout=120)
    app.run()
    app.switch_page(page).run()
    assert not app.exception, app.exception
    return app


def test_a_role_made_on_the_page_trains_chats_with_its_preset_and_is_scored_with_its_metric(
    db, home, tiny_model_dir, monkeypatch
):
    monkeypatch.setenv("TRANSLATOR_BASE_MODEL", str(tiny_model_dir))
    page = _app("pages/roles.py")
    page.text_input(key="role-name-").set_value("mediator")
    page.text_input(key="role-title-").set_value(MEDIATOR.title)
    page.text_area(key="role-system-").set_value(MEDIATOR.system_prompt)
    page.selectbox(key="role-format-").set_value("plain")
    page.selectbox(key="role-metric-").set_value("translation")
    page.checkbox(key="role-history-").uncheck()
    page.checkbox(key="role-sample-").check()
    for key, value in (("t", 0.3), ("p", 0.8), ("r", 1.2), ("m", 16)):
        page.number_input(key=f"role-{key}-").set_value(value)
    page.button[0].click().run()  # the form's Save
    assert not page.exception and not page.error, [e.value for e in page.error]
    assert get_role(db, "mediator") == MEDIATOR

    train_page = _app("pages/train.py")
    role_box = next(box for box in train_page.selectbox if box.label == texts.ROLE)
    assert MEDIATOR.title in role_box.options

    argv = ["--base", str(tiny_model_dir), "--data", str(SAMPLE), "--name", "med-talk", "--role", "mediator"]
    assert train.main([*argv, *TINY_TRAINING, "--max-steps", "2", "--holdout", "0.1"]) == 0
    adapter = adapters.get(db, "med-talk")
    assert adapter.role == "mediator" and adapter.prompt_format == "plain"  # the role's format
    kinds = {row["kind"] for row in db["evaluations"].rows}
    assert kinds == {"translation"}  # the role's metric: BLEU and chrF

    chat = AppTest.from_file(ENTRY, default_timeout=120)
    chat.query_params["adapter"] = "med-talk"
    chat.run()
    assert not chat.exception, chat.exception
    sliders = {slider.label: slider.value for slider in chat.sidebar.slider}
    assert sliders[texts.TEMPERATURE] == 0.3 and sliders[texts.TOP_P] == 0.8
    assert sliders[texts.REPETITION_PENALTY] == 1.2
    assert texts.MODES["translate"] in chat.segmented_control(key="mode").options  # a translation metric

    page = _app("pages/roles.py")
    page.selectbox(key="role-to-edit").set_value("mediator").run()
    page.checkbox(key="role-confirm-mediator").check().run()
    page.button(key="role-delete-mediator").click().run()
    assert any("used by med-talk" in e.value for e in page.error), [e.value for e in page.error]
    assert get_role(db, "mediator") == MEDIATOR


@pytest.mark.slow
def test_an_unused_role_is_deleted_from_the_page(db):
    from dataclasses import replace

    save_custom_role(db, replace(MEDIATOR, name="spare"))
    page = _app("pages/roles.py")
    page.selectbox(key="role-to-edit").set_value("spare").run()
    page.checkbox(key="role-confirm-spare").check().run()
    page.button(key="role-delete-spare").click().run()
    assert not page.exception and not page.error, [e.value for e in page.error]
    assert db["roles"].count == 0 and page.selectbox(key="role-to-edit").value == ""


@pytest.mark.parametrize("setting", list(DECODING_LIMITS))
def test_each_decoding_range_is_checked_at_its_edges_and_its_message_names_its_bounds(setting):
    limit = DECODING_LIMITS[setting]
    check_decoding(Decoding(**{setting: limit.high}))
    check_decoding(Decoding(**{setting: limit.smallest}))
    outside = [limit.high + limit.step] + ([limit.low] if not limit.low_allowed else [limit.low - limit.step])
    for value in outside:
        with pytest.raises(UserError) as refused:
            check_decoding(Decoding(**{setting: value}))
        assert f"{limit.low:g}" in str(refused.value) and f"{limit.high:g}" in str(refused.value)


def test_a_role_at_the_top_of_every_decoding_range_opens_in_chat_with_its_preset(
    db, monkeypatch, tiny_model_dir
):
    """The role editor and the chat sidebar take their bounds from one schema: a preset the editor
    accepts never falls outside a chat slider (the sliders once stopped at temperature 2)."""
    tops = {setting: limit.high for setting, limit in DECODING_LIMITS.items()}
    # beams and sampling do not go together: a sampled role at the top of sampling's ranges, and a
    # searching one at the top of the beams'
    highest = Decoding(do_sample=True, **{**tops, "num_beams": 1})
    widest = Decoding(do_sample=False, **tops)
    save_custom_role(db, Role(name="bold", title="bold", decoding=highest))
    save_custom_role(db, Role(name="wide", title="wide", decoding=widest))
    monkeypatch.setenv("TRANSLATOR_BASE_MODEL", str(tiny_model_dir))
    chat = AppTest.from_file(ENTRY, default_timeout=120)
    chat.run()
    chat.sidebar.selectbox(key="role-for-").set_value("bold").run()
    assert not chat.exception, chat.exception
    sliders = {slider.label: slider.value for slider in chat.sidebar.slider}
    assert sliders[texts.TEMPERATURE] == highest.temperature and sliders[texts.TOP_P] == highest.top_p
    assert sliders[texts.REPETITION_PENALTY] == highest.repetition_penalty
    boxes = {box.label: box.value for box in chat.sidebar.number_input}
    assert boxes[texts.MAX_NEW_TOKENS] == highest.max_new_tokens
    chat.sidebar.selectbox(key="role-for-").set_value("wide").run()
    assert not chat.exception, chat.exception
    boxes = {box.label: box.value for box in chat.sidebar.number_input}
    assert boxes[texts.NUM_BEAMS] == widest.num_beams
    assert {s.label: s.value for s in chat.sidebar.slider}[texts.LENGTH_PENALTY] == widest.length_penalty
