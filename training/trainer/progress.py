"""What the trainer tells the registry while it runs: progress, a heartbeat, checkpoints that are
recognisably complete; and how it obeys a cancel."""

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from transformers import TrainerCallback

from core import errors
from registry import checkpoints as checkpoint_rows
from registry import connect
from registry import jobs as job_rows
from training.parallel import distributed, sharding
from training.trainer import grpo, preference
from training.trainer.cancellation import Cancellation
from training.trainer.checkpoints import keep_weights

HEARTBEAT_SECONDS = 5.0
COMPLETE_MARKER = "translator-complete.json"
SCORED_EXAMPLES = 100  # enough to rank checkpoints; the full held-out set scores the published one

log = logging.getLogger("translator.train")


class TokenCounter:
    """A trainer's collator, counting the real (unpadded) tokens that go through it."""

    def __init__(self, collator):
        self.collator = collator
        self.tokens = 0

    def __call__(self, features):
        self.tokens += sum(map(_tokens, features))
        return self.collator(features)


def _tokens(feature: dict) -> int:
    """An example's tokens; a preference example is read once per answer, its prompt each time."""
    if "input_ids" in feature:
        return len(feature["input_ids"])
    if "prompt_ids" not in feature:  # a GRPO prompt: its tokens are generated inside the step
        return 0
    answers = [feature[key] for key in ("chosen_ids", "rejected_ids", "completion_ids") if key in feature]
    return sum(len(feature["prompt_ids"]) + len(answer) for answer in answers)


class StepAgreement(TrainerCallback):
    """Every rank, after every micro-batch: did any rank get a cancel, and how many tokens went
    through all ranks? A cancel need not wait for the optimizer step, and all ranks stop at the
    same micro-batch; the checkpoint then holds the state after the last whole step, which is
    exactly where a resume continues."""

    def __init__(self, world, counter: TokenCounter, cancellation: Cancellation):
        self.world, self.counter, self.cancellation = world, counter, cancellation
        self.tokens = 0  # global: every rank's tokens
        self._counted = 0
        self._saved_step = None

    def on_train_begin(self, args, state, control, **kwargs):
        # a resumed run starts at the step of the checkpoint it was resumed from
        self._saved_step = state.global_step if state.global_step else None

    def on_substep_end(self, args, state, control, **kwargs):
        self._agree(state, control)

    def on_step_end(self, args, state, control, **kwargs):
        self._agree(state, control)
        if not self.world.main:
            log.info(
                "rank %d: step %d/%d, %d tokens in all",
                self.world.rank,
                state.global_step,
                state.max_steps,
                self.tokens,
            )

    def _agree(self, state, control) -> None:
        local = self.counter.tokens - self._counted
        self._counted = self.counter.tokens
        cancellation = self.cancellation
        stop, tokens, lost = distributed.agree(
            self.world, cancellation.requested.is_set(), local, cancellation.launcher_lost.is_set()
        )
        self.tokens += tokens
        if lost:
            cancellation.launcher_lost.set()  # rank 0 ends the job interrupted, not cancelled
        if stop:
            self.cancellation.requested.set()  # the ranks that got no signal stop as cancelled too
            # a cancel inside the step after a checkpoint has nothing new to save, and saving again
            # would rewrite a folder already marked complete, which a kill could leave half-written
            control.should_save = state.global_step != self._saved_step
            control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs):
        # the Trainer saves at every epoch's end, also one a cancel cut short right after a save
        if state.global_step == self._saved_step:
            control.should_save = False

    def on_save(self, args, state, control, **kwargs):
        distributed.wait_for_all(self.world)  # every rank's part of the checkpoint is written
        self._saved_step = state.global_step


class RegistryProgress(TrainerCallback):
    """Rank 0: writes step, loss, learning rate, global tokens/s and ETA to the registry."""

    def __init__(self, db, job_id: int, agreement: StepAgreement):
        self.db, self.job_id, self.counter = db, job_id, agreement
        self.trainer = None  # set once made: a GRPO trainer keeps its latest completions
        self.last_loss = None
        self._rates: list[float] = []
        self._mark = (time.monotonic(), 0)
        self._start = (time.monotonic(), 0)

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = (time.monotonic(), state.global_step)
        self._mark = (time.monotonic(), self.counter.tokens)
        job_rows.heartbeat(self.db, self.job_id, total_steps=state.max_steps, step=state.global_step)

    def on_save(self, args, state, control, **kwargs):
        """Called once a checkpoint is fully written: only then is it marked complete."""
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            mark_complete(folder, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            return
        now = time.monotonic()
        tokens_per_second = (self.counter.tokens - self._mark[1]) / max(now - self._mark[0], 1e-9)
        self._mark = (now, self.counter.tokens)
        self._rates.append(tokens_per_second)
        started, first_step = self._start
        done = state.global_step - first_step
        eta = (now - started) / done * (state.max_steps - state.global_step) if done else None
        self.last_loss = logs["loss"]
        values = {
            "epoch": state.epoch,
            "loss": logs["loss"],
            "learning_rate": logs.get("learning_rate"),
            "tokens_per_second": tokens_per_second,
        }
        job_rows.record_metric(
            self.db,
            self.job_id,
            state.global_step,
            grad_norm=_number(logs.get("grad_norm")),
            extra={**preference.logged(logs), **grpo.logged(logs), **self._samples()},
            **values,
        )
        job_rows.heartbeat(self.db, self.job_id, step=state.global_step, eta_seconds=eta, **values)
        log.info(
            "step %d/%d loss %.4f lr %.2e %.0f tok/s eta %s",
            state.global_step,
            state.max_steps,
            logs["loss"],
            logs.get("learning_rate") or 0,
            tokens_per_second,
            f"{eta:.0f}s" if eta is not None else "?",
        )

    def _samples(self) -> dict:
        """A GRPO step's latest completions with their rewards (training.trainer.grpo)."""
        samples = getattr(self.trainer, "latest_samples", None) if self.trainer is not None else None
        return {"samples": samples} if samples else {}

    def mean_tokens_per_second(self) -> float | None:
        return sum(self._rates) / len(self._rates) if self._rates else None


class ScoringStopped(Exception):
    """A cancel arrived while a checkpoint was being scored: stop scoring, let training stop."""


class CheckpointScorer(TrainerCallback):
    """Scores each checkpoint as soon as it is completely saved (after `RegistryProgress` marks it).
    `together`: the model is sharded (FSDP), so every rank runs the scoring in step with rank 0,
    which alone decides, keeps the weights and stores the scores (it has `db`)."""

    def __init__(self, db, job_id: int, job_dir: Path, plan, cancellation, together=None):
        self.db, self.job_id, self.job_dir, self.plan = db, job_id, Path(job_dir), plan
        self.cancellation, self.together = cancellation, together
        self.main = together is None or together.main
        self.records = plan.heldout[:SCORED_EXAMPLES]

    def on_save(self, args, state, control, model=None, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if model is None or self.cancellation.requested.is_set():
            return  # the checkpoint of a cancel: the job stops now, a resume scores its last step
        self.score(model, checkpoint, state.global_step, state.epoch)

    def score_if_missing(self, model, checkpoint: Path) -> None:
        """A resumed job whose last checkpoint was saved but not scored (stopped meanwhile)."""
        step = int(checkpoint.name.rsplit("-", 1)[1])
        scored = self.main and any(row.step == step for row in checkpoint_rows.for_job(self.db, self.job_id))
        missing = self.main and not scored
        if self._decided(missing):
            self.score(model, checkpoint, step, epoch=None)

    def _decided(self, value: bool) -> bool:
        """Rank 0's decision, on every rank that scores with it."""
        return distributed.share(self.together, value) if self.together is not None else value

    def score(self, model, checkpoint: Path, step: int, epoch: float | None) -> None:
        if not self._decided(bool(self.records) and (checkpoint / COMPLETE_MARKER).is_file()):
            return
        weights = keep_weights(checkpoint, self.job_dir, step) if self.main else None
        try:
            kind, scores, signature = self._score(model)
        except ScoringStopped:
            log.info("scoring checkpoint %d stopped by a cancel", step)
            return
        finally:
            model.train()
        if not self.main:
            return
        row = checkpoint_rows.store(
            self.db,
            job_id=self.job_id,
            step=step,
            epoch=epoch,
            kind=kind,
            scores=scores,
            num_examples=len(self.records),
            signature=signature,
            weights_path=str(weights),
        )
        job_rows.heartbeat(self.db, self.job_id)
        log.info(
            "checkpoint %d scored on %d held-out examples: %s",
            step,
            len(self.records),
            ", ".join(f"{key} {value:.4g}" for key, value in row.scores.items()),
        )

    def _score(self, model) -> tuple[str, dict, str]:
        return score_model(model, self.plan, self.records, self.cancellation, self.together)


def score_model(model, plan, records: list[dict], cancellation, together=None) -> tuple[str, dict, str]:
    """(kind, scores, signature) of the model in training on held-out `records`: a preference
    job's rewards, else the role's metric. A cancel stops it (ScoringStopped); with `together`
    (a sharded model scored by every rank) the ranks agree on it after each example."""

    def stop_if_cancelled(_done: int) -> None:
        requested = cancellation.requested.is_set()
        if together is not None:
            requested, _, lost = distributed.agree(
                together, requested, 0, cancellation.launcher_lost.is_set()
            )
            if lost:
                cancellation.launcher_lost.set()
            if requested:
                cancellation.requested.set()  # training stops at the next micro-batch, on every rank
        if requested:
            raise ScoringStopped

    with sharding.whole_outside_the_layers(model):
        return _score_model(model, plan, records, stop_if_cancelled)


def _score_model(model, plan, records: list[dict], stop_if_cancelled) -> tuple[str, dict, str]:
    from engine.generation import ChatEngine
    from training.evaluation.evaluate import score_records

    if plan.config.prefers:
        scores = preference.score(model, plan, records, stop=stop_if_cancelled)
        reference = plan.parent.name if plan.parent else "the base model"
        signature = (
            f"implicit reward beta*(log p - log p_ref), beta {plan.config.beta:g}, reference {reference}"
        )
        return "preference", scores, signature
    engine, adapter = ChatEngine.during_training(
        model, plan.tokenizer, plan.spec, plan.model_dir, plan.config.prompt_format
    )
    scored = score_records(
        engine, records, role=plan.role, adapter=adapter, progress=stop_if_cancelled, predict=False
    )
    return plan.role.metric, scored.scores, scored.signature


class Heartbeat:
    """Beats while the main thread is busy in one long step or loading a model."""

    def __init__(self, job_id: int):
        self.job_id = job_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_SECONDS)

    def _beat(self) -> None:
        db = connect()  # a connection belongs to the thread that opened it
        while not self._stop.wait(HEARTBEAT_SECONDS):
            job_rows.heartbeat(db, self.job_id)


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def mark_complete(folder: Path, step: int) -> None:
    marker = folder / COMPLETE_MARKER
    staging = folder / f".{COMPLETE_MARKER}.tmp"
    with open(staging, "w", encoding="utf-8") as file:
        json.dump({"step": step}, file)
        file.flush()
        os.fsync(file.fileno())
    staging.replace(marker)


def newest_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint that was completely written; incomplete ones (a kill while saving)
    are removed, so neither a resume nor the trainer's own rotation ever counts them."""
    if not folder.is_dir():
        return None
    newest = None
    for checkpoint in sorted(folder.glob("checkpoint-*"), key=_step_of, reverse=True):
        if (checkpoint / COMPLETE_MARKER).is_file():
            newest = newest or checkpoint
        else:
            log.warning("removing %s: it was not completely saved", checkpoint.name)
            shutil.rmtree(checkpoint, ignore_errors=True)
    return newest


def _step_of(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


class MlflowSteps(TrainerCallback):
    """Each logged step's loss, learning rate, gradient norm (and a preference job's rewards), as
    the registry gets them, to the job's MLflow run (training.jobs.tracking.MlflowRun). A server that
    stops answering costs a warning, not the job: the registry has every value."""

    def __init__(self, run):
        self.run, self.failed = run, False

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if self.failed or not state.is_world_process_zero or "loss" not in logs:
            return
        try:
            self.run.log_metrics(logs, state.global_step)
        except Exception as error:
            self.failed = True
            log.warning(
                "MLflow stopped taking metrics (%s); the registry keeps them", errors.first_line(error)
            )
