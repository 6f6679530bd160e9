"""Lineage: an adapter trained on top of another records its parent, the kind of training and where
its data came from; the chain survives renames; deleting a parent is refused while a job needs it
and otherwise says what happens. A preference job's request is checked against its parent."""

import json
import os
import shutil
from pathlib import Path

import pytest

from core.errors import UserError
from core.home import PROJECT_ROOT
from engine import catalogue
from registry import adapters, jobs
from studio import adapters as studio_adapters
from studio.supervisor import process_start
from tests.conftest import make_adapter, register_adapter
from training.jobs import lifecycle, plans

PAIRS_SAMPLE = PROJECT_ROOT / "data" / "translator_pairs.jsonl"


@pytest.fixture
def parent(db, home, tiny_model_dir):
    folder = make_adapter(tiny_model_dir, home / "adapters" / "med-zh", seed=1)
    base = catalogue.parse_model_id(str(tiny_model_dir)).model_id
    return register_adapter(db, "med-zh", folder, base, role="translator", prompt_format="plain")


def _child(db, home, tiny_model_dir, parent, name="med-zh-dpo", **lineage):
    folder = make_adapter(tiny_model_dir, home / "adapters" / name, seed=2)
    return studio_adapters.register(
        db,
        name=name,
        role=parent.role,
        base_model=parent.base_model,
        prompt_format=parent.prompt_format,
        path=folder,
        hyperparameters={"lora_r": 4, "method": "dpo"},
        parent_id=parent.id,
        parent_name=parent.name,
        method="dpo",
        data_source={
            "kind": "votes",
            "up_to_vote": 12,
            "file": "votes.jsonl",
            "fingerprint": "f",
            "records": 9,
        },
        **lineage,
    )


def _job(db, parent_name: str, status: str, name="continued", own_process=False) -> jobs.Job:
    job = jobs.create(db, adapter_name=name, config={"parent": parent_name, "method": "dpo"})
    fields = {"status": status}
    if own_process:  # a live process: the supervisor leaves the job active
        fields.update(pid=os.getpid(), pid_started=process_start(os.getpid()))
    jobs.update(db, job.id, **fields)
    return jobs.get(db, job.id)


def test_a_child_records_its_parent_method_and_data_and_the_chain_reads_from_the_base(
    db, home, tiny_model_dir, parent
):
    child = _child(db, home, tiny_model_dir, parent)
    grandchild = _child(db, home, tiny_model_dir, child, name="med-zh-dpo-2")
    assert (child.parent_id, child.parent_name, child.method) == (parent.id, "med-zh", "dpo")
    assert child.data_source["up_to_vote"] == 12
    assert [a.name for a in adapters.lineage(db, grandchild)] == ["med-zh", "med-zh-dpo", "med-zh-dpo-2"]
    assert [a.name for a in adapters.children(db, parent)] == ["med-zh-dpo"]
    assert parent.kind_of_training == "sft"


def test_renaming_a_parent_renames_it_in_the_childs_lineage_and_in_jobs_that_continue_it(
    db, home, tiny_model_dir, parent
):
    child = _child(db, home, tiny_model_dir, parent)
    stopped = _job(db, "med-zh", "cancelled")
    finished = _job(db, "med-zh", "succeeded", name="done")
    studio_adapters.rename(db, "med-zh", "med-zh-v1")
    assert adapters.get(db, child.name).parent_name == "med-zh-v1"
    assert [a.name for a in adapters.lineage(db, adapters.get(db, child.name))] == ["med-zh-v1", "med-zh-dpo"]
    assert jobs.get(db, stopped.id).config["parent"] == "med-zh-v1"  # a resume finds its parent
    assert jobs.get(db, finished.id).config["parent"] == "med-zh"  # history stays as it ran


def test_deleting_a_parent_is_refused_while_a_running_job_continues_it(db, home, tiny_model_dir, parent):
    running = _job(db, "med-zh", "running", own_process=True)
    with pytest.raises(UserError, match=f"reference of job #{running.id} continued"):
        studio_adapters.delete(db, "med-zh")
    assert adapters.get(db, "med-zh") is not None and Path(parent.path).is_dir()


def test_deleting_a_parent_says_what_happens_then_keeps_the_child_with_the_parent_named(
    db, home, tiny_model_dir, parent
):
    child = _child(db, home, tiny_model_dir, parent)
    stopped = _job(db, "med-zh", "interrupted")
    said = studio_adapters.deletion_consequences(db, parent)
    assert any("med-zh-dpo, trained on top of med-zh, keep working" in line for line in said)
    assert any(f"#{stopped.id} continued" in line and "could no longer be resumed" in line for line in said)
    studio_adapters.delete(db, "med-zh")
    kept = adapters.get(db, child.name)
    assert kept.parent_id is None and kept.parent_name == "med-zh"
    assert adapters.lineage(db, kept) == ["med-zh", kept]
    assert Path(kept.path).is_dir()


def _settings(parent_name: str, **more) -> dict:
    return {"method": "dpo", "parent": parent_name, "data": str(PAIRS_SAMPLE), "name": "med-zh-dpo", **more}


def test_a_preference_job_continues_its_parent_with_its_base_role_format_and_lora(db, home, parent):
    plan = lifecycle.check_request(db, _settings("med-zh"))
    config = plan.config
    assert (config.base, config.role, config.prompt_format) == (parent.base_model, "translator", "plain")
    assert (config.lora_r, config.lora_alpha, config.target_modules) == (4, 16, "q_proj,v_proj")
    assert plan.parent.name == "med-zh" and plan.parent.id == parent.id
    assert plan.dataset.source["kind"] == "file" and plan.tokenized.paired
    assert (config.lr, config.epochs) == (5e-5, 1.0)  # a small model's preference defaults


@pytest.mark.parametrize(
    ("more", "message"),
    [
        (
            {"base": "builtin:gemma3-270m"},
            "med-zh was trained on local:.*, so it cannot continue on builtin:gemma3-270m",
        ),
        ({"prompt_format": "chat_template"}, "trained with the prompt format plain, not chat_template"),
        ({"loss_type": "kto"}, "The loss 'kto' belongs to KTO, not DPO: choose one of sigmoid"),
        ({"method": "orpo", "loss_type": "ipo"}, "ORPO has no loss variants \\('ipo' is not one of its\\)"),
        ({"parent": "nobody"}, "No adapter named 'nobody'"),
    ],
)
def test_a_preference_request_at_odds_with_its_parent_is_refused_before_anything_exists(
    db, home, parent, more, message
):
    with pytest.raises(UserError, match=message):
        lifecycle.check_request(db, {**_settings("med-zh"), **more})
    assert db["jobs"].count == 0


def test_dpo_on_judged_answers_is_refused_and_kto_takes_them(db, home, parent, tmp_path):
    judged = tmp_path / "judged.jsonl"
    judged.write_text(
        json.dumps({"prompt": "p", "completion": "好", "label": True})
        + "\n"
        + json.dumps({"prompt": "p", "completion": "坏", "label": False})
        + "\n"
    )
    with pytest.raises(UserError, match="DPO learns from pairs, and judged.jsonl holds judged answers"):
        lifecycle.check_request(db, _settings("med-zh", data=str(judged)))
    plan = lifecycle.check_request(db, _settings("med-zh", data=str(judged), method="kto", holdout=0))
    assert [e.label for e in plan.tokenized.examples] == [True, False]


def test_a_stored_plan_refuses_a_parent_whose_weights_changed_or_are_gone(db, home, parent, tmp_path):
    plan = lifecycle.check_request(db, _settings("med-zh"))
    job_dir = tmp_path / "job"
    plans.store(plan, job_dir)
    assert plans.load(job_dir, 1).parent == plan.parent
    weights = Path(parent.path) / "adapter_model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-4] + b"\0\0\0\1")
    with pytest.raises(UserError, match="The weights of adapter med-zh changed after job 1 started"):
        plans.load(job_dir, 1)
    shutil.rmtree(parent.path)
    with pytest.raises(UserError, match="Job 1 continues the adapter med-zh, whose weights are gone"):
        plans.load(job_dir, 1)
