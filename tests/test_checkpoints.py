"""Every checkpoint scored on the held-out examples, the best one published, any other publishable."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from safetensors.torch import load_file

from core.errors import UserError
from registry import adapters, connect, jobs
from registry import checkpoints as checkpoint_rows
from registry.checkpoints import CheckpointScore
from tests.conftest import use_running_server_navigation
from training.trainer import checkpoints
from training.trainer.checkpoints import PublishedCheckpoint, best


def _row(step: int, **scores) -> CheckpointScore:
    kind = "translation" if "bleu" in scores else "loss"
    return CheckpointScore(
        id=step, job_id=1, step=step, epoch=None, kind=kind, scores=scores, num_examples=4,
        signature="", weights_path=None, created_at=0.0,
    )  # fmt: skip


def test_translators_are_ranked_by_bleu_and_the_later_step_wins_a_tie():
    rows = [_row(2, bleu=3.0, chrf=9.0), _row(4, bleu=7.5, chrf=1.0), _row(6, bleu=7.5, chrf=2.0)]
    assert best(rows) == PublishedCheckpoint(step=6, metric="bleu", value=7.5, num_scored=3)
    assert best(rows[:2]).step == 4


def test_personas_are_ranked_by_the_lowest_held_out_loss():
    rows = [
        _row(1, loss=2.0, perplexity=7.4),
        _row(2, loss=1.5, perplexity=4.5),
        _row(3, loss=1.7, perplexity=5.5),
    ]
    assert best(rows) == PublishedCheckpoint(step=2, metric="loss", value=1.5, num_scored=3)


def test_nothing_scored_chooses_nothing():
    assert best([]) is None


def test_chart_and_table_rows_show_every_step_and_mark_the_published_one():
    rows = [
        replace(_row(2, bleu=3.0, chrf=9.0), epoch=0.5, num_examples=10),
        replace(_row(4, bleu=7.5, chrf=1.0), epoch=1.0, num_examples=10),
    ]
    chart, metrics = checkpoints.chart_rows(rows)
    assert metrics == ["bleu", "chrf"]
    assert chart == [{"step": 2, "bleu": 3.0, "chrf": 9.0}, {"step": 4, "bleu": 7.5, "chrf": 1.0}]
    listed = checkpoints.table(rows, chosen_step=4)
    assert [line["published"] for line in listed] == ["", "★"]
    assert listed[0] == {"step": 2, "epoch": 0.5, "bleu": 3.0, "chrf": 9.0, "scored on": 10, "published": ""}


@pytest.fixture
def trained(trained_job, monkeypatch) -> Path:
    """The session's tiny translator (tests/conftest.py): 6 steps with a checkpoint every 2, 25% of
    the sample held out; its home is this test's."""
    trained_job.at_home(monkeypatch)
    return trained_job.home


@pytest.mark.slow
def test_each_checkpoint_is_scored_and_the_best_is_published(trained, monkeypatch):
    db = connect()
    adapter = adapters.get(db, "tiny-t")
    rows = checkpoint_rows.for_job(db, adapter.job_id)
    assert [row.step for row in rows] == [2, 4, 6]
    assert all(row.kind == "translation" and row.num_examples == 10 for row in rows)
    assert all({"bleu", "chrf"} <= set(row.scores) and "BLEU" in row.signature for row in rows)
    choice = best(rows)
    metrics = adapter.metrics
    assert metrics["checkpoint_step"] == choice.step and metrics["chosen_by"] == "bleu"
    assert metrics["checkpoints_scored"] == 3 and metrics["chosen_score"] == pytest.approx(choice.value)
    published = load_file(f"{adapter.path}/adapter_model.safetensors")
    kept = load_file(
        checkpoints.scored_folder(jobs.get(db, adapter.job_id).job_dir, choice.step)
        / "adapter_model.safetensors"
    )
    assert published.keys() == kept.keys()
    assert all((published[key] == kept[key]).all() for key in kept), (
        "the published weights are the chosen step's"
    )
    log = (trained / "jobs" / str(adapter.job_id) / "train.log").read_text()
    assert log.count("held-out examples: bleu") == 3


def test_the_best_step_is_put_back_when_it_is_not_the_last(tiny_model_dir, tmp_path):
    """choose_and_restore swaps the trained weights for the kept weights of a better, earlier step."""
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.utils import get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False),
    )
    early = tmp_path / "early"
    model.save_pretrained(early)
    saved = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.add_(1.0)
    assert not all(torch.equal(saved[k], v) for k, v in get_peft_model_state_dict(model).items())
    db = connect(tmp_path / "registry.db")
    job = jobs.create(db, adapter_name="x", config={})
    checkpoint_rows.store(db, job_id=job.id, step=3, epoch=1.0, kind="loss", scores={"loss": 1.0},
                          num_examples=4, signature="", weights_path=str(early))  # fmt: skip
    checkpoint_rows.store(db, job_id=job.id, step=6, epoch=2.0, kind="loss", scores={"loss": 1.2},
                          num_examples=4, signature="", weights_path=str(tmp_path / "late"))  # fmt: skip
    (tmp_path / "late").mkdir()
    choice = checkpoints.choose_and_restore(db, job.id, model, final_step=6)
    assert choice.step == 3
    assert all(torch.equal(saved[k], v) for k, v in get_peft_model_state_dict(model).items())


def test_another_checkpoint_can_be_published_as_its_own_adapter(trained, monkeypatch):
    db = connect()
    source = adapters.get(db, "tiny-t")
    other_step = next(s for s in (2, 4, 6) if s != source.metrics["checkpoint_step"])
    with pytest.raises(UserError, match="step 5"):
        checkpoints.publish_checkpoint(db, adapter_name="tiny-t", step=5, new_name="ck-5")
    with pytest.raises(UserError, match="already"):
        checkpoints.publish_checkpoint(db, adapter_name="tiny-t", step=other_step, new_name="tiny-t")
    with pytest.raises(UserError):
        checkpoints.publish_checkpoint(db, adapter_name="tiny-t", step=other_step, new_name="../evil")
    assert not list((trained / "adapters").glob(".tmp-*"))

    other = checkpoints.publish_checkpoint(
        db, adapter_name="tiny-t", step=other_step, new_name=f"ck-{other_step}"
    )
    assert other.role == "translator" and other.base_model == source.base_model
    assert other.metrics["checkpoint_step"] == other_step and other.metrics["chosen_by"] == "user"
    kept = load_file(
        checkpoints.scored_folder(jobs.get(db, source.job_id).job_dir, other_step)
        / "adapter_model.safetensors"
    )
    mine = load_file(f"{other.path}/adapter_model.safetensors")
    assert all(torch_equal(mine[key], kept[key]) for key in kept)
    metadata = json.loads((trained / "adapters" / f"ck-{other_step}" / "translator_adapter.json").read_text())
    assert metadata["name"] == f"ck-{other_step}" and metadata["registration"]["name"] == f"ck-{other_step}"

    from engine.generation import ChatEngine

    engine = ChatEngine(source.base_model, device="cpu")
    engine.ensure_adapter(other)  # loads and serves like any adapter
    assert other.name in engine.loaded_adapters


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_the_adapter_card_charts_the_checkpoints_and_publishes_another(trained, tiny_model_dir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from core import texts
    from tests.test_pages import ENTRY

    monkeypatch.setenv("TRANSLATOR_BASE_MODEL", str(tiny_model_dir))
    use_running_server_navigation(monkeypatch)
    db = connect()
    chosen = adapters.get(db, "tiny-t").metrics["checkpoint_step"]
    with texts.in_language("en"):
        app = AppTest.from_file(ENTRY, default_timeout=120)
        app.run()
        app.switch_page("pages/adapters.py").run()
        assert not app.exception, app.exception
        card = next(e for e in app.expander if e.label.startswith("tiny-t ·"))
        assert any(f"Published step {chosen}: the best bleu" in c.value for c in card.caption)
        tables = [frame.value for frame in card.dataframe if "published" in frame.value.columns]
        assert tables and list(tables[0]["step"]) == [2, 4, 6]
        assert list(tables[0]["published"]) == ["★" if s == chosen else "" for s in (2, 4, 6)]
        step = app.selectbox(key="checkpoint-step-tiny-t").options[0]
        assert int(step) != chosen
        app.text_input(key="checkpoint-name-tiny-t").set_value("ck-picked")
        app.button(key="checkpoint-publish-tiny-t").click().run()
        assert not app.exception and not app.error, [e.value for e in app.error]
        panel = AppTest.from_file(ENTRY, default_timeout=120)
        panel.query_params["job"] = str(adapters.get(db, "tiny-t").job_id)
        panel.run()
        panel.switch_page("pages/train.py").run()
        assert not panel.exception, panel.exception
        assert any(c.value == texts.CHECKPOINT_CHART for c in panel.caption), (
            "the job panel charts the checkpoints"
        )
    picked = adapters.get(connect(), "ck-picked")
    assert picked.metrics["checkpoint_step"] == int(step) and picked.metrics["checkpoint_of"] == "tiny-t"
