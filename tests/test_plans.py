"""One plan per job: checked and tokenised once where the request is made, stored with the job,
loaded and verified (not checked again) by every process that runs it."""

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from core import home as core_home
from core import texts
from core.errors import UserError
from core.home import PROJECT_ROOT
from registry import jobs
from studio import supervisor
from training import train
from training.jobs import lifecycle, plans

SAMPLE = PROJECT_ROOT / "data" / "translator_sample.jsonl"


def _settings(model_dir, name="planned", **more) -> dict:
    return {"base": str(model_dir), "data": str(SAMPLE), "name": name, "role": "translator", **more}


@pytest.fixture
def calls(monkeypatch):
    """How often each expensive step runs, wherever it is called from."""
    counted = {"check_settings": 0, "load_dataset": 0, "tokenize_dataset": 0}

    def counting(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            counted[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counting(lifecycle, "check_settings")
    counting(plans, "load_dataset")
    counting(plans, "tokenize_dataset")
    return counted


def test_a_stored_plan_loads_without_checking_or_tokenising_and_holds_the_same_examples(
    home, db, tiny_model_dir, calls
):
    plan = lifecycle.check_request(db, _settings(tiny_model_dir, holdout=0.2))
    job = lifecycle.create_job(db, plan)
    assert calls == {"check_settings": 1, "load_dataset": 1, "tokenize_dataset": 1}
    loaded = plans.load(Path(job.job_dir), job.id)
    assert calls == {"check_settings": 1, "load_dataset": 1, "tokenize_dataset": 1}  # nothing again
    assert loaded.config == replace(plan.config, job_id=job.id) and loaded.role == plan.role
    assert loaded.tokenized == plan.tokenized and loaded.dataset == plan.dataset and loaded.heldout
    assert loaded.tokens_key == plan.tokens_key and loaded.packing == plan.packing


def test_the_same_request_again_reads_the_cached_tokens_and_another_max_length_makes_new_ones(
    home, db, tiny_model_dir, calls
):
    first = lifecycle.check_request(db, _settings(tiny_model_dir))
    again = lifecycle.check_request(db, _settings(tiny_model_dir, name="twice"))
    assert calls["tokenize_dataset"] == 1 and again.tokenized == first.tokenized
    shorter = lifecycle.check_request(db, _settings(tiny_model_dir, max_length=120))
    assert calls["tokenize_dataset"] == 2 and shorter.tokens_key != first.tokens_key
    assert shorter.tokenized.max_length == 120


def test_the_process_that_loads_a_plan_refuses_a_changed_file_and_retokenises_a_cleared_cache(
    home, db, tiny_model_dir, tmp_path, calls
):
    data = tmp_path / "pairs.jsonl"
    shutil.copy(SAMPLE, data)
    plan = lifecycle.check_request(db, _settings(tiny_model_dir, data=str(data)))
    job = lifecycle.create_job(db, plan)
    job_dir = Path(job.job_dir)
    data.write_text(data.read_text(encoding="utf-8") + SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(UserError, match=f"pairs.jsonl changed since job {job.id} started"):
        plans.load(job_dir, job.id)
    shutil.copy(SAMPLE, data)
    shutil.rmtree(core_home.tokenized_cache_dir())
    assert plans.load(job_dir, job.id).tokenized == plan.tokenized
    assert calls["tokenize_dataset"] == 2  # made again once, then cached again
    assert plans.load(job_dir, job.id).tokenized == plan.tokenized and calls["tokenize_dataset"] == 2
    (job_dir / plans.PLAN_FILE).unlink()
    with pytest.raises(UserError, match="has no stored plan"):
        plans.load(job_dir, job.id)


def test_the_token_cache_keeps_within_its_limit_oldest_first_and_a_job_whose_tokens_went_makes_them_again(
    home, db, tiny_model_dir, monkeypatch, calls
):
    monkeypatch.setenv("TRANSLATOR_TOKENS_CACHE_MB", "1")
    cache = core_home.tokenized_cache_dir()
    old = [cache / f"old-{n}.npz" for n in range(3)]
    for age, path in enumerate(old):
        path.write_bytes(b"t" * 400_000)
        os.utime(path, ns=(10**18 + age, 10**18 + age))  # written in this order, long ago
    plan = lifecycle.check_request(db, _settings(tiny_model_dir))  # writes its own tokens: over 1 MiB
    job = lifecycle.create_job(db, plan)
    ours = cache / f"{plan.tokens_key}.npz"
    assert not old[0].exists() and old[1].exists() and old[2].exists() and ours.exists()
    assert sum(path.stat().st_size for path in cache.glob("*.npz")) <= 2**20
    for path in cache.glob("*.npz"):
        path.unlink()  # gone, as the limit may take them
    assert plans.load(Path(job.job_dir), job.id).tokenized == plan.tokenized
    assert calls["tokenize_dataset"] == 2 and ours.exists()  # made again, once


def test_a_plan_is_written_whole_and_names_what_its_tokens_were_made_from(home, db, tiny_model_dir):
    plan = lifecycle.check_request(db, _settings(tiny_model_dir))
    job_dir = core_home.jobs_dir() / "manual"
    plans.store(plan, job_dir)
    assert [path.name for path in job_dir.iterdir()] == [plans.PLAN_FILE]  # no staging file left
    stored = json.loads((job_dir / plans.PLAN_FILE).read_text(encoding="utf-8"))
    assert stored["tokens_key"] == plans.tokens_key(
        plan.config, plan.role, plan.dataset.fingerprint, plan.model_dir
    )
    assert (core_home.tokenized_cache_dir() / f"{plan.tokens_key}.npz").is_file()
    other_role = plans.tokens_key(
        plan.config, lifecycle.get_role(db, "persona"), plan.dataset.fingerprint, plan.model_dir
    )
    assert other_role != plan.tokens_key  # the role's system prompt is part of every example


def test_tokenising_a_large_file_reports_how_far_it_got(home, db, tiny_model_dir, tmp_path):
    pairs = [json.loads(line) for line in SAMPLE.open(encoding="utf-8")]
    data = tmp_path / "large.jsonl"
    rows = [{**pairs[n % len(pairs)], "input": f"{pairs[n % len(pairs)]['input']} {n}"} for n in range(2500)]
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    heard = []
    lifecycle.check_request(
        db,
        _settings(tiny_model_dir, data=str(data), holdout=0),
        progress=lambda f, text: heard.append((f, text)),
    )
    tokenizing = [(fraction, text) for fraction, text in heard if "large.jsonl" in text]
    assert [round(f, 2) for f, _ in tokenizing] == [0.0, 0.4, 0.8]
    assert tokenizing[-1][1] == texts.TOKENIZING.format(name="large.jsonl", done=2000, total=2500)


@pytest.mark.slow
def test_a_page_started_job_is_checked_once_and_tokenised_once_from_start_to_success(
    home, db, tiny_model_dir, monkeypatch, calls
):
    launched = []
    monkeypatch.setattr(supervisor, "launch", lambda db, row, **kw: launched.append(row.id) or row)
    job = lifecycle.submit_form(db, _settings(tiny_model_dir, max_steps=2, batch_size=1, grad_accum=1))
    assert launched == [job.id]
    # what the launched trainer runs, here in this process so its calls are counted
    assert train.main(["--job-id", str(job.id)]) == 0
    assert jobs.get(db, job.id).status == "succeeded"
    assert calls == {"check_settings": 1, "load_dataset": 1, "tokenize_dataset": 1}


def test_a_start_tokenises_with_the_tokenizer_the_page_already_holds(home, db, tiny_model_dir, monkeypatch):
    from engine import catalogue, loading

    spec = catalogue.parse_model_id(str(tiny_model_dir))
    held = loading.load_tokenizer(tiny_model_dir, spec)
    asked = []
    monkeypatch.setattr(plans.loading, "load_tokenizer", lambda *a, **k: pytest.fail("loaded a second time"))
    plan = lifecycle.check_request(
        db, _settings(tiny_model_dir), tokenizers=lambda model_id: asked.append(model_id) or held
    )
    assert asked == [spec.model_id] and plan.tokenizer is held
