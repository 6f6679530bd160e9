"""Running a learning-rate sweep job (training.jobs.sweep says what a sweep is and checks one): each
rate trained from the same start in this process, scored, and stored in `sweep_points`."""

import gc
import logging
import time
from dataclasses import replace

from registry import sweeps as sweep_rows
from training.jobs.sweep import best, rates, steps
from training.trainer.fit import fit
from training.trainer.progress import SCORED_EXAMPLES, ScoringStopped, score_model

log = logging.getLogger("translator.train")


def run_sweep(run) -> str:
    """Each rate not yet scored: a fresh LoRA from the same seed, `steps` steps, then its score on
    the held-out examples. Returns "cancelled" or "succeeded"."""
    config, plan = run.config, run.plan
    records = plan.heldout[:SCORED_EXAMPLES]
    done = {point.lr for point in sweep_rows.for_job(run.db, run.job_id)}
    todo = [lr for lr in rates(config.lr_sweep) if lr not in done]
    if done:
        log.info("resuming the sweep: %d rate(s) already scored, %d to go", len(done), len(todo))
    for lr in todo:
        trial_config = replace(config, lr=lr, max_steps=steps(config), resume=False)
        trial = replace(run, plan=replace(plan, config=trial_config))
        started = time.monotonic()
        log.info("sweep: learning rate %g for %d steps", lr, trial_config.max_steps)
        model, summary = fit(trial, sweeping=True)
        if summary is None:
            return "cancelled"
        try:
            kind, scores, _ = score_model(model, plan, records, run.cancellation)
        except ScoringStopped:
            return "cancelled"
        finally:
            del model
            gc.collect()
        point = sweep_rows.store(
            run.db,
            job_id=run.job_id,
            lr=lr,
            steps=summary["steps"],
            train_loss=summary["train_loss"],
            kind=kind,
            scores=scores,
            num_examples=len(records),
            seconds=time.monotonic() - started,
        )
        log.info(
            "sweep: learning rate %g scored %s on %d held-out examples",
            lr,
            ", ".join(f"{key} {value:.4g}" for key, value in point.scores.items()),
            len(records),
        )
    chosen = best(sweep_rows.for_job(run.db, run.job_id))
    log.info("sweep: the best learning rate is %g (%s)", chosen.lr, chosen.scores)
    return "succeeded"
