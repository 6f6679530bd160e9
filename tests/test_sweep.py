"""The learning-rate finder: rates read and refused before anything exists, a sweep job on the tiny
model that scores each rate on its held-out examples and names the best, and the training page's
chart and one-click "use this rate"."""

import pytest

from core import texts
from core.errors import UserError
from registry import adapters, jobs, sweeps
from tests.conftest import SAMPLE, TINY_TRAINING, run_module
from tests.test_pages import _app, app_env  # noqa: F401  (fixtures)
from training.jobs import lifecycle, sweep


def test_rates_are_read_from_a_list_or_a_log_spaced_range():
    assert sweep.rates("1e-3, 1e-4,5e-4") == [1e-4, 5e-4, 1e-3]
    assert sweep.rates("1e-5:1e-2:4") == [1e-5, 1e-4, 1e-3, 1e-2]
    assert sweep.around(1e-3) == "0.0001,0.000333,0.001,0.003"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("1e-3", "has a single rate"),
        ("1e-3,0.001", "has a single rate"),
        ("0,1e-3", "zero or negative"),
        ("-1e-4,1e-3", "zero or negative"),
        ("0:1e-2:4", "zero or negative"),
        ("1e-2:1e-4:3", "has a single rate"),
        ("1e-4:1e-2:1", "has a single rate"),
        ("1e-4;1e-3", "Cannot read"),
        ("1e-4:1e-2", "Cannot read"),
        ("1e-3,2", "above 1"),
        ("1e-6:1e-1:20", "has 20 rates: at most 12"),
    ],
)
def test_bad_sweeps_are_refused_with_what_to_write(text, problem):
    with pytest.raises(UserError, match=problem):
        sweep.rates(text)


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"lr_sweep": "1e-3"}, "has a single rate"),
        ({"lr_sweep": "1e-4,1e-3", "holdout": 0}, "scores on held-out examples"),
        ({"lr_sweep": "1e-4,1e-3", "processes": 2}, "runs in one process"),
        ({"lr_sweep": "1e-4,1e-3", "method": "dpo"}, "supervised"),
    ],
)
def test_a_sweep_that_cannot_run_is_refused_before_any_job_exists(db, tiny_model_dir, changes, problem):
    settings = {"base": str(tiny_model_dir), "data": str(SAMPLE), "name": "s", **changes}
    with pytest.raises(UserError, match=problem):
        lifecycle.check_request(db, settings)
    assert jobs.list_all(db) == []


@pytest.mark.slow
def test_a_sweep_scores_each_rate_and_the_page_puts_the_best_in_the_form(app_env, home, tiny_model_dir):  # noqa: F811
    result = run_module(
        "training.train",
        *("--base", tiny_model_dir, "--data", SAMPLE, "--name", "find-lr", "--role", "assistant"),
        *("--lr-sweep", "1e-6,1e-2", "--max-steps", "6", "--holdout", "0.2", *TINY_TRAINING[:4]),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    job = jobs.list_all(app_env)[0]
    points = sweeps.for_job(app_env, job.id)
    assert job.status == "succeeded" and [p.lr for p in points] == [1e-6, 1e-2]
    assert all(p.kind == "loss" and p.steps == 6 and p.num_examples == 8 for p in points)
    losses = {p.lr: p.scores["loss"] for p in points}
    assert losses[1e-2] < losses[1e-6], "six steps at 1e-2 move a tiny model further than at 1e-6"
    assert sweep.best(points).lr == 1e-2
    assert adapters.get(app_env, "find-lr") is None, "a sweep publishes nothing"

    app = _app("pages/train.py", job=str(job.id))
    base = app.selectbox(key="train-base").value
    assert any(texts.SWEEP_BEST.format(lr="0.01", done=2, total=2) == c.value for c in app.caption)
    app.button(key=f"sweep-use-{job.id}").click().run()
    assert app.number_input(key=f"setting-lr-{base}").value == pytest.approx(1e-2)
