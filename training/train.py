"""Train a LoRA adapter as a standalone process that reports through the registry.

    python -m training.train --base builtin --data data/translator_sample.jsonl \
        --role translator --name med-zh-1
    python -m training.train --name med-zh-1 --resume      # after a crash, kill or cancel
    python -m training.train --config job.json             # settings from a JSON file
    torchrun --nproc-per-node 2 -m training.train ...      # the same, data-parallel on 2 processes

The request is checked by `training.lifecycle.check` (the same checks the training page runs)
before anything is created: a bad input prints one `error:` line, exits 2 and leaves no job,
folder or row. While training, progress, loss and a heartbeat go to the registry and a log to
`$TRANSLATOR_HOME/jobs/<id>/train.log`; checkpoints are saved every epoch (or --save-steps) and
marked complete once written. SIGTERM or Ctrl-C: while preparing, loading or waiting for the
device the job ends at once; while training, after the current micro-batch, with a checkpoint.
Each checkpoint is scored on the held-out examples as it is saved (training/checkpoints.py), and
the best one by the role's metric is published, not merely the last. The adapter is written to a
temporary folder, renamed into `$TRANSLATOR_HOME/adapters/<name>/`, registered, and then scored on
all the held-out examples with the same model, next to its base (status evaluating).

Under torchrun or accelerate launch (training/distributed.py), rank 0 alone touches the registry,
the device lock, the checkpoints' marks and the adapters folder; the other ranks train from its
canonical config and log to `jobs/<id>/rank<k>.log`. A cancel stops every rank at the same step;
a rank that dies ends the job as interrupted, resumable with the same or another process count.

Exit codes: 0 published, 1 the job failed, 2 bad input (nothing created), 143 cancelled.
"""

import signal
import sys

if __name__ == "__main__":
    # Before the imports below (about a second): a cancel that arrives while they load still
    # counts, and ends the job as cancelled rather than killing it half-started.
    _signalled_early: list[int] = []
    for _number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(_number, lambda number, _frame: _signalled_early.append(number))

import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", category=FutureWarning)  # deprecation chatter from library internals


from core import home, texts  # noqa: E402
from core.errors import UserError  # noqa: E402
from engine import devices, models  # noqa: E402
from engine.adapters import read_metadata, write_metadata  # noqa: E402
from registry import adapters as adapter_rows  # noqa: E402
from registry import connect  # noqa: E402
from registry import jobs as job_rows  # noqa: E402
from studio import adapters as studio_adapters  # noqa: E402
from studio import processes  # noqa: E402
from training import batching, distributed, launchers, lifecycle  # noqa: E402
from training.cancellation import Cancellation, JobCancelled  # noqa: E402
from training.config import TrainConfig, parse_config  # noqa: E402
from training.distributed import World  # noqa: E402

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 1, 2, 143
DEVICES_HELD = "TRANSLATOR_DEVICES_HELD"  # set by the launching trainer: it holds this job's devices
ALSO_LOG_TO_FILE = "TRANSLATOR_LOG_TO_FILE"  # a job started from a shell keeps its train.log
HYPERPARAMETERS = (
    "epochs",
    "max_steps",
    "lr",
    "batch_size",
    "grad_accum",
    "max_length",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "seed",
    "limit",
    "holdout",
)

log = logging.getLogger("translator.train")


def main(argv: list[str] | None = None) -> int:
    world = World.from_env()
    cancellation = Cancellation()
    cancellation.install()  # before anything heavy: a cancel while preparing ends the job at once
    followers = _Followers(world)
    try:
        if world.distributed:
            distributed.die_with_parent()
            distributed.join(world)
        if not world.main:
            return _follow(world, cancellation)
        code = _main(argv, cancellation, followers)
        followers.stop(code)  # a request refused or cancelled before training: the others end too
        return code
    finally:
        cancellation.uninstall()
        distributed.leave()


class _Followers:
    """Rank 0's messages to the other ranks, which wait for them before training: keep waiting,
    train this plan, or end with this exit code."""

    # well inside the collectives' timeout (distributed.COLLECTIVE_TIMEOUT), without a message every second
    WAIT_MESSAGE_EVERY_S = 60.0

    def __init__(self, world: World):
        self.world, self.told = world, not world.distributed
        self.last_wait_message = time.monotonic()

    def still_waiting(self) -> None:
        if not self.told and time.monotonic() - self.last_wait_message >= self.WAIT_MESSAGE_EVERY_S:
            self.last_wait_message = time.monotonic()
            distributed.share(self.world, ("wait",))

    def go(self, run: "_Run", train: bool) -> None:
        if not self.told:
            self.told = True
            message = ("go", run.config.as_dict(), run.plan.role, run.job["id"], str(run.job_dir), train)
            distributed.share(self.world, message)

    def stop(self, code: int) -> None:
        if not self.told:
            self.told = True
            distributed.share(self.world, ("stop", code))


def _main(argv: list[str] | None, cancellation: Cancellation, followers: _Followers) -> int:
    config, db, claimed = None, None, []
    try:
        config = parse_config(argv)
        if globals().get("_signalled_early"):
            raise JobCancelled
        db = connect()
        plan = _plan_and_claim(db, config, claimed)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        if claimed:  # the app queued it, or it is a resume: show the reason there
            job_rows.finish(db, claimed[0]["id"], "failed", error=str(error))
        return EXIT_BAD_INPUT
    except JobCancelled:
        job_id = claimed[0]["id"] if claimed else (config.job_id if config else 0)
        if job_id:
            job_rows.finish(db or connect(), job_id, "cancelled")
        print("cancelled before training started", file=sys.stderr)
        return EXIT_CANCELLED
    return _run(db, plan, claimed[0], cancellation, followers, launched_by_app=bool(config.job_id))


def _follow(world: World, cancellation: Cancellation) -> int:
    """Ranks other than 0: wait for rank 0's plan, then train it without touching the registry."""
    try:
        message = distributed.share(world)
        while message[0] == "wait":
            message = distributed.share(world)
        if message[0] == "stop":
            return message[1]
        _, settings, role, job_id, job_dir, train = message
        if not train:
            return 0
        _log_to_rank_file(Path(job_dir), world.rank)
        plan = lifecycle.prepare(TrainConfig(**settings), role)
        run = _Run(None, plan, {"id": job_id}, Path(job_dir), cancellation, world)
        log.info("rank %d of %d (pid %d): training job %s", world.rank, world.size, os.getpid(), job_id)
        _, summary = _train(run)
        return 0 if summary is not None else EXIT_CANCELLED
    except JobCancelled:
        return EXIT_CANCELLED


def _plan_and_claim(db, config: TrainConfig, claimed: list) -> lifecycle.Plan:
    """The checked plan; the job row it runs as goes into `claimed` as soon as it is ours (a new
    job's row is created only after the check passed)."""
    if config.job_id:  # queued by the app (Start or Resume): the row and its config exist
        job = job_rows.get(db, config.job_id)
        if job is None or job["status"] != "queued":
            raise UserError(texts.ERR_JOB_NOT_QUEUED.format(job=config.job_id))
        claimed.append(lifecycle.claim(db, job))
        return lifecycle.check(db, lifecycle.stored_config(job, resume=config.resume), job=job)
    if config.resume:
        job = lifecycle.find_resumable(db, config.name)
        # a shell's --resume runs on as many processes as it says (default one), not as before
        settings = {**_given_settings(config), "processes": config.processes}
        # checked before it is claimed: a refused resume leaves the job as it was, as on the page
        plan = lifecycle.check(db, lifecycle.stored_config(job, **settings, resume=True), job=job)
        claimed.append(lifecycle.claim(db, job))
        return plan
    plan = lifecycle.check(db, config, base_dir=Path.cwd())
    claimed.append(
        lifecycle.create_job(db, plan, pid=os.getpid(), pid_started=processes.process_start(os.getpid()))
    )
    return plan


def _given_settings(config: TrainConfig) -> dict:
    """Flags a `--resume` run sets beyond its name: they override the stored config (e.g. --device)."""
    defaults = TrainConfig().as_dict()
    ignored = {"name", "resume", "job_id"}
    return {k: v for k, v in config.as_dict().items() if v != defaults[k] and k not in ignored}


@dataclass
class _Run:
    """What one trainer process works with once its job is claimed."""

    db: object
    plan: lifecycle.Plan
    job: dict
    job_dir: Path
    cancellation: Cancellation
    world: World = World()

    @property
    def config(self) -> TrainConfig:
        return self.plan.config


def _run(
    db, plan, job: dict, cancellation: Cancellation, followers: _Followers, launched_by_app: bool
) -> int:
    from training.progress import Heartbeat  # torch loads only once the input is known good

    if followers.world.distributed:  # the config records how the job really runs
        plan = replace(plan, config=replace(plan.config, processes=followers.world.local_size))
    job_dir = home.jobs_dir() / str(job["id"])
    job_dir.mkdir(parents=True, exist_ok=True)
    log_path = job_dir / "train.log"
    _configure_logging(log_path, captured=launched_by_app and not os.environ.get(ALSO_LOG_TO_FILE))
    job_rows.update(
        db,
        job["id"],
        started_at=time.time(),
        heartbeat_at=time.time(),
        log_path=str(log_path),
        job_dir=str(job_dir),
        **{key: value for key, value in plan.job_fields().items() if key not in ("adapter_name", "config")},
        config=json.dumps(plan.config.as_dict(), ensure_ascii=False, sort_keys=True),
    )
    (job_dir / "config.json").write_text(json.dumps(plan.config.as_dict(), indent=2), encoding="utf-8")
    run = _Run(db, plan, job, job_dir, cancellation, followers.world)
    heartbeat = Heartbeat(job["id"])
    heartbeat.start()
    holding = None
    try:
        holding = _wait_for_the_devices(db, run, followers)
        if holding.files and (holding.gpus or plan.config.processes > 1) and not run.world.distributed:
            heartbeat.stop()
            _become_the_launcher(run, holding, launched_by_app)  # does not return
        job_rows.update(db, job["id"], status="running", started_at=time.time())
        log.info(
            "job %s: training %r on %s (%s)",
            job["id"],
            plan.config.name,
            plan.config.base,
            plan.config.prompt_format,
        )
        log.info("data %s [%s]: %s", plan.dataset.name, plan.dataset.fingerprint, plan.tokenized.summary())
        if plan.by_size is not None:
            log.info(
                "learning rate %g, %g epochs: %s", plan.config.lr, plan.config.epochs, plan.by_size.reason()
            )
        if _train_and_publish(run, followers) == "cancelled":
            job_rows.finish(db, job["id"], "cancelled")
            log.info("cancelled; a checkpoint was saved: resume with --resume --name %s", plan.config.name)
            return EXIT_CANCELLED
        with cancellation.deferred():
            job_rows.finish(db, job["id"], "succeeded")
        log.info("job %s succeeded", job["id"])
        return 0
    except JobCancelled:
        job_rows.finish(db, job["id"], "cancelled")
        log.info("cancelled before training started")
        return EXIT_CANCELLED
    except BaseException as error:
        message = models.first_line(error)
        if run.world.distributed and (
            cancellation.requested.is_set() or distributed.is_collective_failure(error)
        ):
            # torchrun stops the others when one rank dies: neither a cancel nor a failed job
            job_rows.finish(db, job["id"], "interrupted", error=texts.ERR_RANK_LOST.format(error=message))
            log.error("another training process stopped: %s", message)
            return EXIT_FAILED
        job_rows.finish(db, job["id"], "failed", error=message)
        log.exception("training failed: %s", message)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        heartbeat.stop()
        if holding is not None:
            holding.release()


def _wait_for_the_devices(db, run: _Run, followers: _Followers) -> devices.Holding:
    """The GPUs this job needs (one per process), or the CPU (engine/devices.py). A later job stays
    queued, heartbeating, with the reason on its row, until they are free; a cancel while it waits
    ends it at once. Under a launcher that took them for the job, there is nothing to wait for."""
    if os.environ.get(DEVICES_HELD):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        return devices.Holding([int(gpu) for gpu in visible.split(",") if gpu.strip()])
    config, job_id = run.config, run.job["id"]
    count = config.processes if devices.uses_gpus(config.device) else 0
    # ranks started by hand (torchrun from a shell) already use their GPUs: hold exactly those
    wanted = devices.launched_gpus(count) if run.world.distributed and count else None
    reason = None
    while (holding := devices.try_take(count, job_id, wanted)) is None:
        waiting_for = devices.waiting_reason(count)
        if waiting_for != reason:
            reason = waiting_for
            log.info("%s", reason)
            job_rows.update(db, job_id, waiting_for=reason)
        run.cancellation.requested.wait(1.0)
        run.cancellation.raise_if_requested()
        followers.still_waiting()
    job_rows.update(db, job_id, waiting_for=None, devices=holding.visible_devices() or "cpu")
    if holding.gpus:
        log.info("devices: GPU %s", holding.visible_devices())
    return holding


def _become_the_launcher(run: _Run, holding: devices.Holding, launched_by_app: bool):
    """This process turns into the job's launcher (torchrun, or the trainer itself on the GPUs it
    took), keeping the device locks across the exec. A fresh process is needed: CUDA reads
    CUDA_VISIBLE_DEVICES once, at its start."""
    holding.keep_across_exec()
    env = {**os.environ, DEVICES_HELD: "1"}
    if holding.gpus:
        env["CUDA_VISIBLE_DEVICES"] = holding.visible_devices()
    if not launched_by_app:
        env[ALSO_LOG_TO_FILE] = "1"
    arguments = ["--job-id", str(run.job["id"])] + (["--resume"] if run.config.resume else [])
    command = launchers.trainer_command(launchers.Launch(processes=run.config.processes), arguments)
    log.info("launching %s", " ".join(command[1:]))
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)


def _train_and_publish(run: _Run, followers: _Followers) -> str:
    """Train (or finish what a stopped run left), publish the adapter, score it on the held-out
    examples with the same model. Returns "cancelled" or "succeeded"."""
    published = _already_published(run)
    followers.go(run, train=published is None)
    if published is not None:
        _evaluate_heldout(run, published, model=None)
        return "succeeded"
    model, summary = _train(run)
    if summary is None:
        return "cancelled"
    with run.cancellation.deferred():  # a half-published adapter would help nobody
        adapter = _publish(run, model, summary)
    _evaluate_heldout(run, adapter, model)
    return "succeeded"


def _already_published(run: _Run) -> dict | None:
    """The adapter row of a run stopped after publishing began, or None to train. A row this very
    job registered means the publishing is done; a folder this job renamed into place without its
    row is complete (it was renamed whole), so it is registered now."""
    job_id, name = run.job["id"], run.config.name
    row = adapter_rows.get(run.db, name)
    if row is not None and row["job_id"] == job_id:
        log.info("adapter %r was registered by this job before it was stopped: publishing is done", name)
        return row
    final = home.adapters_dir() / name
    metadata = read_metadata(final)
    if not final.is_dir() or metadata.get("job_id") != job_id or "registration" not in metadata:
        return None
    with run.cancellation.deferred():
        row = studio_adapters.register(run.db, path=final, job_id=job_id, **metadata["registration"])
    lifecycle.remove_staging(name, job_id)
    log.info("registered adapter %r, published by this job before it was stopped", name)
    return row


def _device(run: _Run) -> str:
    """Where this process trains and evaluates: its rank's GPU, the configured device, or the best one."""
    return run.world.device(run.config.device or models.choose_device())


def _train(run: _Run):
    """The trained PEFT model and a summary of the training, or (None, None) when cancelled."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from training.checkpoints import choose_and_restore
    from training.progress import (
        CheckpointScorer,
        RegistryProgress,
        StepAgreement,
        TokenCounter,
        newest_complete_checkpoint,
    )

    config, plan, world = run.config, run.plan, run.world
    device = _device(run)
    dtype = models.parse_dtype(config.dtype, device)
    torch.manual_seed(config.seed)
    model = models.load_model(
        plan.model_dir, plan.spec, device=device, dtype=dtype, trust_remote_code=config.trust_remote_code
    )
    targets = lora_targets(model, config.target_modules)
    checkpointing = batching.choose_checkpointing(
        config.gradient_checkpointing, device, model.num_parameters()
    )
    recipe = batching.choose_recipe(plan.packing, checkpointing)
    batching.prepare_model(model, recipe)
    target_logits_only = batching.keeps_target_logits_only(model)
    micro_batch, accumulation = batching.micro_batches(device, config.batch_size, config.grad_accum)
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
    )
    strategy = launchers.strategy_arguments(config.strategy, model)
    model = get_peft_model(model, lora)
    trainable, total = model.get_nb_trainable_parameters()
    log.info(
        "LoRA on %s: %s trainable of %s parameters; %s %s; %s; %d process(es) x %d examples x %d "
        "accumulated = %d examples per step",
        ",".join(targets),
        f"{trainable:,}",
        f"{total:,}",
        device,
        str(dtype).removeprefix("torch."),
        recipe.describe(),
        world.size,
        micro_batch,
        accumulation,
        world.size * micro_batch * accumulation,
    )
    checkpoints = run.job_dir / "checkpoints"
    arguments = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=micro_batch,
        gradient_accumulation_steps=accumulation,
        learning_rate=config.lr,
        logging_steps=1,
        save_strategy="steps" if config.save_steps else "epoch",
        save_steps=config.save_steps or 500,
        save_total_limit=2,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=device == "cpu",
        seed=config.seed,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        train_sampling_strategy=batching.sampling_strategy(recipe),
        ddp_find_unused_parameters=False,  # every LoRA weight gets a gradient in every step
        **strategy,
    )
    collator = batching.collator(plan.tokenizer, recipe)
    counter = TokenCounter(batching.TargetLogitsOnly(collator) if target_logits_only else collator)
    agreement = StepAgreement(world, counter, run.cancellation)
    progress = RegistryProgress(run.db, run.job["id"], agreement) if world.main else None
    scorer = None
    if world.main and not config.skip_evaluation:
        scorer = CheckpointScorer(run.db, run.job["id"], run.job_dir, plan, run.cancellation)
    # the agreement first: all ranks have saved before rank 0 marks a checkpoint complete
    callbacks = [callback for callback in (agreement, progress, scorer) if callback is not None]
    trainer = batching.make_trainer(
        model=model,
        args=arguments,
        train_dataset=[{"input_ids": e.input_ids, "labels": e.labels} for e in plan.tokenized.examples],
        data_collator=counter,
        compute_loss_func=batching.target_loss if target_logits_only else None,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # our callback logs each step already
    if config.strategy == "fsdp" and not trainer.is_fsdp_enabled:
        raise UserError(texts.ERR_SHARDING_NEEDS_GPUS.format(strategy=config.strategy))
    # rank 0 alone looks (it removes incomplete ones), every rank resumes from what it found
    resume_from = distributed.share(
        world, newest_complete_checkpoint(checkpoints) if config.resume and world.main else None
    )
    if config.resume:
        log.info("resuming from %s", resume_from or "the start (no complete checkpoint was saved)")
    with run.cancellation.deferred():
        if resume_from is not None and _already_finished(resume_from):
            summary = _summary_from_checkpoint(model, resume_from)
            if scorer is not None:
                scorer.score_if_missing(model, resume_from)
        else:
            result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            summary = {
                "final_loss": progress.last_loss if progress else None,
                "train_loss": result.training_loss,
                "steps": result.global_step,
                "train_seconds": result.metrics.get("train_runtime"),
                "tokens_per_second": progress.mean_tokens_per_second() if progress else None,
                **_peak_memory(device),
            }
            log.info(
                "trained as %s (%s); peak memory of this process: %s",
                type(trainer.model_wrapped).__name__,
                config.strategy,
                ", ".join(f"{key} {value:,.0f}" for key, value in _peak_memory(device).items()),
            )
    del trainer  # its optimizer state is not needed for publishing or evaluating
    gc.collect()
    if run.cancellation.requested.is_set():
        return None, None
    if not world.main:
        return model, summary
    choice = choose_and_restore(run.db, run.job["id"], model, final_step=summary["steps"])
    return model, {**summary, **(choice.as_metrics() if choice else {}), "recipe": recipe.describe()}


def _peak_memory(device: str) -> dict:
    import resource

    import torch

    peak = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.startswith("cuda"):
        peak["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def _already_finished(checkpoint: Path) -> bool:
    """The checkpoint holds the last step: training it again would run one step past the end."""
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return state["global_step"] >= state["max_steps"] > 0


def _summary_from_checkpoint(model, checkpoint: Path) -> dict:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(checkpoint / "adapter_model.safetensors"))
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    log.info(
        "the checkpoint holds the final step %d: publishing it without training further", state["global_step"]
    )
    return {
        "final_loss": losses[-1] if losses else None,
        "train_loss": sum(losses) / len(losses) if losses else None,
        "steps": state["global_step"],
        "train_seconds": None,
        "tokens_per_second": None,
    }


def _publish(run: _Run, model, summary: dict) -> dict:
    """Temporary folder → rename → row: no row ever points at a half-written folder, and the folder
    carries what its row needs, so a run stopped between the rename and the row can register it."""
    config, plan = run.config, run.plan
    final = home.adapters_dir() / config.name
    if final.exists():
        raise UserError(texts.ERR_PUBLISH_RACE.format(folder=final))
    tokenized = plan.tokenized
    registration = {
        "name": config.name,
        "role": config.role,
        "base_model": config.base,
        "prompt_format": config.prompt_format,
        "hyperparameters": {key: getattr(config, key) for key in HYPERPARAMETERS},
        "dataset_name": plan.dataset.name,
        "dataset_fingerprint": plan.dataset.fingerprint,
        "num_examples": len(tokenized.examples),
        "metrics": {
            **summary,
            "num_tokens": tokenized.num_tokens,
            "num_target_tokens": tokenized.num_target_tokens,
            "num_truncated": tokenized.num_truncated,
            "num_dropped": tokenized.num_dropped,
            "num_heldout": len(plan.heldout),
        },
    }
    staging = lifecycle.staging_folder(config.name, run.job["id"])
    shutil.rmtree(staging, ignore_errors=True)  # left by a run killed while writing it
    try:
        model.save_pretrained(staging, safe_serialization=True)
        write_metadata(
            staging,
            name=config.name,
            base_model=config.base,
            role=config.role,
            prompt_format=config.prompt_format,
            job_id=run.job["id"],
            registration=registration,
        )
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    adapter = studio_adapters.register(run.db, path=final, job_id=run.job["id"], **registration)
    log.info("published adapter %r at %s (final loss %s)", config.name, final, summary["final_loss"])
    return adapter


def _evaluate_heldout(run: _Run, adapter: dict, model) -> None:
    """Score the new adapter and its base on the examples training never saw, with the model this
    job trained (no second copy, same dtype and device); `model` None: a resumed job whose adapter
    was published before it stopped loads its base once (scores already stored are kept, not
    computed again). The adapter is already published, so a failure or a cancel here is logged
    and the job still succeeds."""
    from engine.generation import ChatEngine
    from training.data import write_jsonl
    from training.evaluate import describe, evaluate_with_base

    plan = run.plan
    if not plan.heldout or run.config.skip_evaluation:
        return
    try:
        job_rows.update(run.db, run.job["id"], status="evaluating")
        # a file, so the adapters page can evaluate again on exactly these examples
        heldout = write_jsonl(plan.heldout, run.job_dir / "heldout.jsonl")
        run.cancellation.raise_if_requested()
        if model is None:
            engine = ChatEngine(
                plan.config.base,
                device=_device(run),
                dtype=plan.config.dtype,
                trust_remote_code=plan.config.trust_remote_code,
            )
        else:
            engine = ChatEngine.around_trained(
                model, plan.tokenizer, plan.spec, plan.model_dir, plan.config.prompt_format, adapter
            )
        rows = evaluate_with_base(
            run.db, adapter_name=run.config.name, data=str(heldout.path), engine=engine, dataset=heldout
        )
        for who, row in zip((run.config.name, "base model"), rows, strict=True):
            log.info("held-out evaluation (%d examples), %s:\n%s", len(plan.heldout), who, describe(row))
    except JobCancelled:
        log.warning("held-out evaluation cancelled; the adapter is published")
    except Exception as error:  # the adapter is fine; only its scores are missing
        log.warning("held-out evaluation failed: %s", models.first_line(error))


def lora_targets(model, requested: str) -> list[str]:
    wanted = [name.strip() for name in requested.split(",") if name.strip()]
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [name for name in wanted if name in present]
    if not targets:
        raise UserError(texts.ERR_NO_TARGETS.format(wanted=", ".join(wanted)))
    return targets


def _log_to_rank_file(job_dir: Path, rank: int) -> None:
    """Another rank's output, library warnings and tracebacks included, goes to its own log."""
    log_file = open(job_dir / f"rank{rank}.log", "ab", buffering=0)  # noqa: SIM115 (for the process's life)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(log_file.fileno(), stream.fileno())
    _configure_logging(job_dir / f"rank{rank}.log", captured=True)


def _configure_logging(log_path: Path, captured: bool) -> None:
    """When the app launched us, stdout already is the log file; from a shell, also write it."""
    handlers = [logging.StreamHandler(sys.stdout if captured else sys.stderr)]
    if not captured:
        handlers.append(logging.FileHandler(log_path, encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True
    )


if __name__ == "__main__":
    sys.exit(main())
