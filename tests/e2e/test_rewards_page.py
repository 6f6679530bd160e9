"""The reward page in a real browser: from a translator adapter, a GRPO job with the chrF reward
alone, its reward curve and latest answers watched on the panel, and the child found on the
adapters page with its lineage and a one-click comparison with its parent."""

import pytest

from core import texts
from registry import adapters, connect, jobs
from tests.conftest import make_adapter, register_adapter
from tests.e2e.conftest import (
    StreamlitServer,
    app_env,
    assert_no_traceback,
    open_page,
    poll,
    stop_trainers,
    wait_idle,
)

pytestmark = pytest.mark.e2e


def _fill(page, label: str, value) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Tab")
    wait_idle(page)


def test_a_grpo_child_of_a_translator_is_watched_and_compared_with_its_parent(
    browser, tmp_path, tiny_model_dir
):
    db = connect(tmp_path / "registry.db")
    base = f"local:{tiny_model_dir}"
    folder = make_adapter(tiny_model_dir, tmp_path / "adapters" / "med", 7)
    register_adapter(db, "med", folder, base, "translator", prompt_format="chat_template")
    fresh = StreamlitServer(tmp_path, app_env(tmp_path, tiny_model_dir), tmp_path / "streamlit.log").start()
    try:
        page = open_page(browser, f"{fresh.url}/rewards?parent=med")
        poll(lambda: page.get_by_role("heading", name=texts.GRPO_TITLE).count(), 30, "the reward page")
        poll(lambda: page.get_by_text(texts.REWARD_NAMES["chrf"]).count(), 30, "the translator's rewards")
        _fill(page, texts.REWARD_NAMES["english"], 0)  # chrF alone
        labels = texts.SETTING_LABELS
        for name, value in (
            ("max_steps", 3),
            ("generations", 2),
            ("completion_length", 8),
            ("batch_size", 1),
            ("save_steps", 0),
        ):
            _fill(page, labels[name], value)
        name_field = page.get_by_label(texts.ADAPTER_NAME)
        assert name_field.input_value() == "med-grpo"
        page.get_by_role("button", name=texts.GRPO_START).click()

        finished = f"med-grpo · {texts.STATUS['succeeded']}"
        poll(
            lambda: page.get_by_text(finished).count(),
            300,
            lambda: (
                "the job to succeed; the page said: "
                + page.get_by_test_id("stMain").inner_text()[-1500:].replace("\n", " | ")
            ),
        )
        wait_idle(page)
        child = adapters.get(db, "med-grpo")
        assert (child.parent_name, child.method) == ("med", "grpo")
        assert child.hyperparameters["rewards"] == "chrf=1"
        assert [m["step"] for m in jobs.metrics_for(db, child.job_id)] == [1, 2, 3]
        # the reward's curve and the latest answers with their chrF, on the panel
        poll(lambda: page.get_by_text(texts.REWARD_TERMS_CHART).count(), 30, "the reward curve")
        assert page.get_by_text(f"{texts.SAMPLES_TITLE} · {texts.STEP_AXIS} 3").count() == 1
        table = page.get_by_test_id("stTable").last
        poll(lambda: texts.REWARD_NAMES["chrf"] in table.inner_text(), 30, "the answers' chrF column")
        assert page.get_by_role("link", name=texts.COMPARE_WITH_PARENT.format(parent="med")).count() == 1

        page.goto(f"{fresh.url}/adapters")
        wait_idle(page)
        page.get_by_text(f"med-grpo · translator · {base}").click()
        chain = (
            f"{base} ({texts.TRAINING_KINDS['base']}) → med ({texts.TRAINING_KINDS['sft']}) → med-grpo (GRPO)"
        )
        poll(lambda: page.get_by_text(chain).count(), 30, "the lineage chain on the card")
        page.get_by_role("link", name=texts.COMPARE_WITH_PARENT.format(parent="med")).click()
        wait_idle(page)
        chosen = page.get_by_test_id("stMultiSelect").first
        poll(lambda: "med-grpo" in chosen.inner_text() and "med\n" in chosen.inner_text() + "\n", 30, "both")
        page.context.close()
    finally:
        fresh.stop()
        stop_trainers(tmp_path)
    assert_no_traceback(fresh)
