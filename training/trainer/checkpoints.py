"""Every checkpoint scored, the best one published, any other publishable later.

As the trainer saves a checkpoint, `training.trainer.progress.CheckpointScorer` scores the model as it is
at that step on the job's held-out examples (at most `progress.SCORED_EXAMPLES` of them) with the
role's metric: BLEU for translators (chrF alongside), the references' loss for personas and
assistants. The checkpoint's adapter weights are copied to `jobs/<id>/scored/step-N/` (the
trainer's own checkpoints rotate away), so the job publishes the best step, not merely the last,
and the adapters page can publish any other scored step as an adapter of its own. This module
stays free of torch and transformers at import: pages use it.
"""

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from core import home, names, texts
from core.errors import UserError
from engine.adapters import WEIGHTS_FILE, read_metadata, write_metadata
from registry import checkpoints as checkpoint_rows
from registry.adapters import Adapter
from registry.checkpoints import CheckpointScore
from studio import adapters as studio_adapters
from studio.accounts import LOCAL, Asker, changeable_adapter
from training.jobs import lifecycle

ADAPTER_FILES = (WEIGHTS_FILE, "adapter_config.json")
HIGHER_IS_BETTER = {
    "translation": ("bleu", True),
    "loss": ("loss", False),
    "preference": (
        "accuracy",
        True,
    ),  # of the implicit reward on held-out pairs (training/trainer/preference.py)
}

log = logging.getLogger("translator.train")


@dataclass(frozen=True)
class PublishedCheckpoint:
    """The checkpoint a job publishes, and why."""

    step: int
    metric: str
    value: float
    num_scored: int

    def as_metrics(self) -> dict:
        return {
            "checkpoint_step": self.step,
            "chosen_by": self.metric,
            "chosen_score": self.value,
            "checkpoints_scored": self.num_scored,
        }


def selection_metric(kind: str) -> tuple[str, bool]:
    """The score a role's checkpoints are ranked by, and whether higher is better."""
    return HIGHER_IS_BETTER[kind]


def best(rows: list[CheckpointScore]) -> PublishedCheckpoint | None:
    """The best scored checkpoint by its role's metric; on a tie, the later step (more training
    for the same score). None when nothing was scored."""
    if not rows:
        return None
    metric, higher = selection_metric(rows[0].kind)

    def rank(row: CheckpointScore) -> tuple:
        value = row.scores[metric]
        return (value if higher else -value, row.step)

    chosen = max(rows, key=rank)
    return PublishedCheckpoint(chosen.step, metric, chosen.scores[metric], len(rows))


def scored_folder(job_dir: Path, step: int) -> Path:
    return Path(job_dir) / "scored" / f"step-{step}"


def keep_weights(checkpoint: Path, job_dir: Path, step: int) -> Path:
    """Copy a checkpoint's adapter files where rotation cannot reach them: into a temporary folder,
    renamed into place whole, so a kill leaves it complete or absent."""
    final = scored_folder(job_dir, step)
    staging = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ADAPTER_FILES:
        shutil.copy2(checkpoint / name, staging / name)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return final


def restore(model, folder: Path) -> None:
    """Put a kept checkpoint's adapter weights back into the trained PEFT model."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(Path(folder) / WEIGHTS_FILE))


def choose_and_restore(db, job_id: int, model, final_step: int) -> PublishedCheckpoint | None:
    """After training: the best scored checkpoint, its weights put back into `model` when it is
    not the last step. None (the last weights stay) when no checkpoint was scored."""
    rows = [row for row in checkpoint_rows.for_job(db, job_id) if Path(row.weights_path or "").is_dir()]
    choice = best(rows)
    if choice is None:
        return None
    if choice.step != final_step:
        chosen = next(row for row in rows if row.step == choice.step)
        restore(model, Path(chosen.weights_path))
        log.info(
            "publishing checkpoint %d (%s %.4g), the best of %d scored, rather than the last step %d",
            choice.step,
            choice.metric,
            choice.value,
            choice.num_scored,
            final_step,
        )
    return choice


def publish_checkpoint(db, *, adapter_name: str, step: int, new_name: str, asker: Asker = LOCAL) -> Adapter:
    """Publish another scored checkpoint of the job that made `adapter_name` as an adapter of its
    own: same base, role, format and data, that step's weights. Temporary folder → rename → row."""
    source = changeable_adapter(db, asker, adapter_name)
    new_name = names.check_name(new_name)
    lifecycle.refuse_taken_name(db, new_name, job=None)
    row = next((r for r in checkpoint_rows.for_job(db, source.job_id) if r.step == step), None)
    weights = Path(row.weights_path) if row and row.weights_path else None
    if weights is None or not all((weights / name).is_file() for name in ADAPTER_FILES):
        raise UserError("ERR_CHECKPOINT_MISSING", step=step, name=adapter_name)
    metadata = read_metadata(Path(source.path))
    final = home.adapters_dir() / new_name
    staging = final.with_name(f".tmp-{new_name}-checkpoint")
    shutil.rmtree(staging, ignore_errors=True)
    metric, _ = selection_metric(row.kind)
    registration = {
        "name": new_name,
        "role": source.role,
        "base_model": source.base_model,
        "prompt_format": source.prompt_format,
        "hyperparameters": source.hyperparameters,
        "dataset_name": source.dataset_name,
        "dataset_fingerprint": source.dataset_fingerprint,
        "num_examples": source.num_examples,
        "metrics": {
            **{k: v for k, v in source.metrics.items() if k not in ("final_loss", "train_loss", "steps")},
            "steps": step,
            "checkpoint_step": step,
            "chosen_by": "user",
            "chosen_score": row.scores[metric],
            "checkpoint_of": adapter_name,
        },
    }
    try:
        shutil.copytree(weights, staging)
        write_metadata(
            staging,
            **{
                **{k: v for k, v in metadata.items() if k != "registration"},
                "name": new_name,
                "registration": registration,
            },
        )
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return studio_adapters.register(db, path=final, job_id=source.job_id, **registration)


def chart_rows(rows: list[CheckpointScore]) -> tuple[list[dict], list[str]]:
    """One row per scored checkpoint with its step and headline metrics, and those metrics' names,
    for a line chart (BLEU and chrF share a 0-100 axis; a loss is drawn alone)."""
    metrics = [m for m in ("bleu", "chrf", "loss", "accuracy", "margin") if rows and m in rows[0].scores]
    return [{"step": row.step, **{m: round(row.scores[m], 4) for m in metrics}} for row in rows], metrics


def table(rows: list[CheckpointScore], chosen_step: int | None) -> list[dict]:
    """The scored checkpoints as the adapter card lists them, the published one marked."""
    columns = texts.CHECKPOINT_COLUMNS
    lines = []
    for row in rows:
        line = {columns["step"]: row.step, columns["epoch"]: round(row.epoch or 0, 2)}
        line.update({metric: round(value, 3) for metric, value in row.scores.items() if metric != "tokens"})
        line[columns["n"]] = row.num_examples
        line[columns["published"]] = "★" if row.step == chosen_step else ""
        lines.append(line)
    return lines


def describe_choice(adapter: Adapter) -> str:
    """Why this adapter holds the weights of its step, in the chosen language ("" if not chosen)."""
    metrics = adapter.metrics
    if "checkpoint_step" not in metrics:
        return ""
    if metrics.get("chosen_by") == "user":
        return texts.CHECKPOINT_CHOSEN_BY_USER.format(
            step=metrics["checkpoint_step"], source=metrics.get("checkpoint_of", "?")
        )
    return texts.CHECKPOINT_CHOSEN.format(
        step=metrics["checkpoint_step"],
        metric=metrics["chosen_by"],
        value=metrics["chosen_score"],
        count=metrics["checkpoints_scored"],
    )
