"""A training job from claim to end: the plan checked and the row claimed, the devices waited for,
the ranks launched (rank 0 re-executes `python -m training.train` under torchrun when the job asks
for more than one process), the fit, the adapter published and scored on the held-out examples.
Rank 0 alone touches the registry; the other ranks follow its messages (`Followers`)."""

import json
import logging
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from core import errors, home
from core.errors import UserError
from core.texts import Message
from engine import devices, loading
from engine.adapters import read_metadata, write_metadata
from registry import adapters as adapter_rows
from registry import jobs as job_rows
from registry.adapters import Adapter
from registry.jobs import Job
from studio import accounts, slurm, supervisor
from studio import adapters as studio_adapters
from training.config import TrainConfig
from training.jobs import lifecycle, plans, queue
from training.parallel import distributed, launchers, memory
from training.parallel.distributed import World
from training.trainer.cancellation import Cancellation, JobCancelled
from training.trainer.fit import Run, device_for, fit

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
    "method",
)
PREFERENCE_HYPERPARAMETERS = ("beta", "loss_type", "max_prompt_length")
GRPO_HYPERPARAMETERS = (
    "rewards",
    "generations",
    "completion_length",
    "sampling_temperature",
    "kl",
    "length_range",
)

log = logging.getLogger("translator.train")


class Followers:
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

    def go(self, run: "Run", train: bool) -> None:
        if not self.told:
            self.told = True
            overrides = {"processes": run.config.processes, "resume": run.config.resume}
            message = ("go", overrides, run.job_id, str(run.job_dir), train)
            distributed.share(self.world, message)

    def stop(self, code: int) -> None:
        if not self.told:
            self.told = True
            distributed.share(self.world, ("stop", code))


def follow(world: World, cancellation: Cancellation) -> int:
    """Ranks other than 0: wait for rank 0's plan, then train it without touching the registry."""
    try:
        message = distributed.share(world)
        while message[0] == "wait":
            message = distributed.share(world)
        if message[0] == "stop":
            return message[1]
        _, overrides, job_id, job_dir, train = message
        if not train:
            return 0
        log_to_rank_file(Path(job_dir), world.rank)
        plan = plans.load(Path(job_dir), job_id, **overrides)  # what rank 0 loaded, verified here
        import_the_trainer(plan.config)
        run = Run(None, plan, job_id, Path(job_dir), cancellation, world)
        log.info("rank %d of %d (pid %d): training job %s", world.rank, world.size, os.getpid(), job_id)
        _, summary = fit(run)
        return 0 if summary is not None else EXIT_CANCELLED
    except JobCancelled:
        return EXIT_CANCELLED


def submit_to_cluster(db, settings: dict) -> Job | None:
    """A command line's job for a Slurm cluster (`--cluster slurm`, or `--resume` of one): checked,
    created and submitted, for Slurm to run; None for a job that runs here, in this process."""
    asker = accounts.cli_asker(db)
    if settings.get("resume"):
        earlier = lifecycle.find_resumable(db, settings.get("name", ""), asker)
        if earlier.config.get("cluster") != "slurm" and settings.get("cluster") != "slurm":
            return None
        given = {k: v for k, v in settings.items() if k not in ("name", "resume", "job_id")}
        return lifecycle.resume(db, earlier.id, changes=given, asker=asker)
    if settings.get("cluster") != "slurm":
        return None
    return lifecycle.submit(db, settings, base_dir=Path.cwd(), asker=asker)


def plan_and_claim(db, settings: dict, claimed: list) -> plans.Plan:
    """The job's plan; the job row it runs as goes into `claimed` as soon as it is ours (a new
    job's row is created only after its check passed). A job the app queued (Start, Resume, or
    this trainer re-executed as the launcher) was checked there: its stored plan is loaded and
    verified, not checked again."""
    if settings.get("job_id"):
        job = job_rows.get(db, settings["job_id"])
        requeued = int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0  # Slurm runs its script again
        if job is None or not (job.status == "queued" or (requeued and job.status in job_rows.RESUMABLE)):
            raise UserError("ERR_JOB_NOT_QUEUED", job=settings["job_id"])
        claimed.append(lifecycle.claim(db, job))
        job_dir = Path(job.job_dir or home.jobs_dir() / str(job.id))
        if not (job_dir / plans.PLAN_FILE).is_file():  # queued by an older version, without a plan
            plans.store(lifecycle.check_request(db, lifecycle.stored_config(job), job=job), job_dir)
        return plans.load(job_dir, job.id, resume=bool(settings.get("resume")))
    asker = accounts.cli_asker(db)  # in team mode, the account of the shell's personal key
    if settings.get("resume"):
        job = lifecycle.find_resumable(db, settings.get("name", ""), asker)
        # a shell's --resume runs on as many processes as it says (default one), not as before
        given = {k: v for k, v in settings.items() if k not in ("name", "resume", "job_id")}
        # checked before it is claimed: a refused resume leaves the job as it was, as on the page
        changes = {"processes": TrainConfig().processes, **given, "resume": True}
        plan = lifecycle.check_request(db, lifecycle.stored_config(job, **changes), job=job, asker=asker)
        plans.store(plan, Path(job.job_dir or home.jobs_dir() / str(job.id)))
        claimed.append(lifecycle.claim(db, job))
        return plan
    plan = lifecycle.check_request(db, settings, base_dir=Path.cwd(), asker=asker)
    started = supervisor.process_start(os.getpid())
    claimed.append(lifecycle.create_job(db, plan, pid=os.getpid(), pid_started=started, owner_id=asker.id))
    return plan


def import_the_trainer(config: TrainConfig) -> None:
    """torch, transformers, PEFT and TRL: seconds of imports, taken once the input is known good
    and while a cancel still ends the job at once (training.train calls it before run_job);
    without bitsandbytes unless the job quantises its base."""
    if config.quantize == "none":
        loading.leave_out_bitsandbytes()
    import training.trainer.progress  # noqa: F401
    import training.trainer.sweep_job  # noqa: F401


def run_job(
    db, plan, job: Job, cancellation: Cancellation, followers: Followers, launched_by_app: bool
) -> int:
    from training.trainer.progress import Heartbeat  # loaded by import_the_trainer
    from training.trainer.sweep_job import run_sweep

    if followers.world.distributed:  # the config records how the job really runs
        plan = replace(plan, config=replace(plan.config, processes=followers.world.local_size))
    job_dir = home.jobs_dir() / str(job.id)
    job_dir.mkdir(parents=True, exist_ok=True)
    log_path = job_dir / "train.log"
    configure_logging(log_path, captured=launched_by_app and not os.environ.get(ALSO_LOG_TO_FILE))
    job_rows.update(
        db,
        job.id,
        started_at=time.time(),
        heartbeat_at=time.time(),
        log_path=str(log_path),
        job_dir=str(job_dir),
        **{key: value for key, value in plan.job_fields().items() if key not in ("adapter_name", "config")},
        config=plan.config.as_dict(),
    )
    (job_dir / "config.json").write_text(json.dumps(plan.config.as_dict(), indent=2), encoding="utf-8")
    run = Run(db, plan, job.id, job_dir, cancellation, followers.world)
    heartbeat = Heartbeat(job.id)
    heartbeat.start()
    holding = None
    try:
        holding = _wait_for_the_devices(db, run, followers)
        if holding.files and (holding.gpus or plan.config.processes > 1) and not run.world.distributed:
            heartbeat.stop()
            _become_the_launcher(run, holding, launched_by_app)  # does not return
        job_rows.update(db, job.id, status="running", started_at=time.time())
        log.info(
            "job %s: training %r on %s (%s)",
            job.id,
            plan.config.name,
            plan.config.base,
            plan.config.prompt_format,
        )
        log.info("data %s [%s]: %s", plan.dataset.name, plan.dataset.fingerprint, plan.tokenized.summary())
        if plan.by_size is not None:
            log.info(
                "learning rate %g, %g epochs: %s", plan.config.lr, plan.config.epochs, plan.by_size.reason()
            )
        if plan.config.mlflow_uri and not plan.config.lr_sweep:
            run = replace(run, mlflow=_start_mlflow(run))
        outcome = run_sweep(run) if plan.config.lr_sweep else _train_and_publish(run, followers)
        if outcome == "cancelled" and cancellation.launcher_lost.is_set():
            job_rows.finish(db, job.id, "interrupted", error=Message("ERR_LAUNCHER_LOST"))
            log.error("a training process lost its launcher; a checkpoint was saved: resume to continue")
            return EXIT_FAILED
        if outcome == "cancelled":
            code = end_stopped(db, job.id)
            said = "cancelled" if code == EXIT_CANCELLED else "stopped by Slurm"
            log.info("%s; a checkpoint was saved: resume with --resume --name %s", said, plan.config.name)
            return code
        with cancellation.deferred():
            job_rows.finish(db, job.id, "succeeded")
        log.info("job %s succeeded", job.id)
        return 0
    except JobCancelled:
        if cancellation.launcher_lost.is_set():
            job_rows.finish(db, job.id, "interrupted", error=Message("ERR_LAUNCHER_LOST"))
            return EXIT_FAILED
        code = end_stopped(db, job.id)
        log.info("%s before training started", "cancelled" if code == EXIT_CANCELLED else "stopped by Slurm")
        return code
    except BaseException as error:
        message = errors.message_of(error)
        if run.world.distributed and (
            cancellation.requested.is_set() or distributed.is_collective_failure(error)
        ):
            # torchrun stops the others when one rank dies: neither a cancel nor a failed job
            job_rows.finish(db, job.id, "interrupted", error=Message("ERR_RANK_LOST", {"error": message}))
            log.error("another training process stopped: %s", message)
            return EXIT_FAILED
        remedy = error.changes if isinstance(error, memory.OutOfMemory) else {}
        job_rows.finish(db, job.id, "failed", error=message, remedy=remedy)
        log.exception("training failed: %s", message)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        heartbeat.stop()
        if holding is not None:
            holding.release()
        if run.mlflow is not None:
            _finish_mlflow(run)


def end_stopped(db, job_id: int) -> int:
    """The end of a job a SIGTERM stopped. Here, and on a cluster when the studio's Stop asked for
    it, that is a cancel. On a cluster any other SIGTERM is Slurm's own (the time limit's warning, a
    preemption, an scancel outside the studio): the job is interrupted and resumable, or queued again
    when it asked to be requeued."""
    slurm_id = os.environ.get("SLURM_JOB_ID")
    row = job_rows.get(db, job_id)
    if not slurm_id or row.config.get("cluster") != "slurm" or row.stop_requested_at:
        job_rows.finish(db, job_id, "cancelled")
        return EXIT_CANCELLED
    left = slurm.minutes_left()
    why = "SLURM_TIME_LIMIT" if left is not None and left < 3 else "SLURM_STOPPED"
    if row.config.get("requeue"):
        # back in Slurm's queue, to resume in its next run: a preemption Slurm requeues itself, a time
        # limit we requeue; should Slurm end the job instead, the reconciler says so
        waiting = Message("SLURM_REQUEUED", {"id": slurm_id})
        job_rows.update(db, job_id, status="queued", pid=None, waiting_for=waiting)
        requeued = slurm.requeue_self()
        log.info("Slurm job %s back in the queue (%s)", slurm_id, "requeued" if requeued else "by Slurm")
        return EXIT_CANCELLED
    job_rows.finish(db, job_id, "interrupted", error=Message(why, {"id": slurm_id}))
    log.info("interrupted by Slurm (%s); resume from the checkpoint", why)
    return EXIT_FAILED


def _start_mlflow(run: Run):
    """The job's MLflow run (continued on a resume); None, with a warning in the log, when the
    server stopped answering since the request was checked: the job trains all the same."""
    from training.jobs.tracking import MlflowRun

    try:
        tracked = MlflowRun(run.config.mlflow_uri, run.job_dir)
        tracked.start(
            run.config.name, run.job_id, {**run.config.as_dict(), "base_model_id": run.plan.spec.model_id}
        )
        log.info("MLflow run %s at %s", tracked.run_id, run.config.mlflow_uri)
        return tracked
    except Exception as error:
        log.warning("MLflow is not recording this job: %s", errors.first_line(error))
        return None


MLFLOW_STATUS = {"succeeded": "FINISHED", "cancelled": "KILLED"}  # anything else ended it: FAILED


def _finish_mlflow(run: Run) -> None:
    job = job_rows.get(run.db, run.job_id)
    adapter = adapter_rows.get(run.db, run.config.name) if job.status == "succeeded" else None
    try:
        run.mlflow.finish(run.db, run.job_id, adapter, MLFLOW_STATUS.get(job.status, "FAILED"))
    except Exception as error:
        log.warning("MLflow did not take the job's results: %s", errors.first_line(error))


def _wait_for_the_devices(db, run: Run, followers: Followers) -> devices.Holding:
    """The GPUs this job needs (one per process), or the CPU (engine/devices.py). A later job stays
    queued, heartbeating, with the reason on its row, until they are free; a cancel while it waits
    ends it at once. Under a launcher that took them for the job, there is nothing to wait for."""
    config, job_id = run.config, run.job_id
    if os.environ.get(DEVICES_HELD):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        if run.world.main:  # the claim of this re-executed launcher cleared what the job holds
            job_rows.update(db, job_id, devices=visible or "cpu")
        return devices.Holding([int(gpu) for gpu in visible.split(",") if gpu.strip()])
    count = config.processes if devices.uses_gpus(config.device) else 0
    # ranks started by hand (torchrun from a shell) already use their GPUs: hold exactly those
    wanted = devices.launched_gpus(count) if run.world.distributed and count else None
    reason = None
    while True:
        # only the head of the fair line tries (training/jobs/queue.py)
        waiting_for = queue.turn(db, job_id)
        holding = devices.try_take(count, job_id, wanted) if waiting_for is None else None
        if holding is not None:
            break
        waiting_for = waiting_for or devices.waiting_reason(count)
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


def _become_the_launcher(run: Run, holding: devices.Holding, launched_by_app: bool):
    """This process turns into the job's launcher (torchrun, or the trainer itself on the GPUs it
    took), keeping the device locks across the exec. A fresh process is needed: CUDA reads
    CUDA_VISIBLE_DEVICES once, at its start."""
    holding.keep_across_exec()
    env = {**os.environ, DEVICES_HELD: "1"}
    if holding.gpus:
        env["CUDA_VISIBLE_DEVICES"] = holding.visible_devices()
    if not launched_by_app:
        env[ALSO_LOG_TO_FILE] = "1"
    arguments = ["--job-id", str(run.job_id)] + (["--resume"] if run.config.resume else [])
    command = launchers.trainer_command(launchers.Launch(processes=run.config.processes), arguments)
    log.info("launching %s", " ".join(command[1:]))
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)


def _train_and_publish(run: Run, followers: Followers) -> str:
    """Train (or finish what a stopped run left), publish the adapter, score it on the held-out
    examples with the same model. Returns "cancelled" or "succeeded"."""
    published = _already_published(run)
    followers.go(run, train=published is None)
    if published is not None:
        _evaluate_heldout(run, published, model=None)
        return "succeeded"
    model, summary = fit(run)
    if summary is None:
        return "cancelled"
    with run.cancellation.deferred():  # a half-published adapter would help nobody
        adapter = _publish(run, model, summary)
    _evaluate_heldout(run, adapter, model)
    return "succeeded"


def _already_published(run: Run) -> Adapter | None:
    """The adapter row of a run stopped after publishing began, or None to train. A row this very
    job registered means the publishing is done; a folder this job renamed into place without its
    row is complete (it was renamed whole), so it is registered now."""
    job_id, name = run.job_id, run.config.name
    row = adapter_rows.get(run.db, name)
    if row is not None and row.job_id == job_id:
        log.info("adapter %r was registered by this job before it was stopped: publishing is done", name)
        return row
    final = home.adapters_dir() / name
    metadata = read_metadata(final)
    if not final.is_dir() or metadata.get("job_id") != job_id or "registration" not in metadata:
        return None
    with run.cancellation.deferred():
        row = studio_adapters.register(run.db, path=final, job_id=job_id, **metadata["registration"])
    shutil.rmtree(supervisor.job_staging_folder(name, job_id), ignore_errors=True)
    log.info("registered adapter %r, published by this job before it was stopped", name)
    return row


def _publish(run: Run, model, summary: dict) -> Adapter:
    """Temporary folder → rename → row: no row ever points at a half-written folder, and the folder
    carries what its row needs, so a run stopped between the rename and the row can register it."""
    config, plan = run.config, run.plan
    final = home.adapters_dir() / config.name
    if final.exists():
        raise UserError("ERR_PUBLISH_RACE", folder=final)
    tokenized = plan.tokenized
    named = HYPERPARAMETERS + (PREFERENCE_HYPERPARAMETERS if config.prefers else ())
    named += GRPO_HYPERPARAMETERS if config.rewarded else ()
    hyperparameters = {key: getattr(config, key) for key in named}
    if config.prefers:
        hyperparameters["loss_type"] = config.loss
    if config.rewarded:
        from training.evaluation import rewards

        hyperparameters["rewards"] = rewards.describe(rewards.weights_for(config, plan.role))
    if config.quantize != "none":  # trained on a quantised base; used with the full-precision one
        hyperparameters["quantize"] = config.quantize
    registration = {
        "name": config.name,
        "role": config.role,
        "base_model": config.base,
        "prompt_format": config.prompt_format,
        "hyperparameters": hyperparameters,
        "dataset_name": plan.dataset.name,
        "dataset_fingerprint": plan.dataset.fingerprint,
        "parent_id": plan.parent.id if plan.parent else None,
        "parent_name": plan.parent.name if plan.parent else None,
        "method": config.method,
        "data_source": plan.dataset.source,
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
    staging = supervisor.job_staging_folder(config.name, run.job_id)
    shutil.rmtree(staging, ignore_errors=True)  # left by a run killed while writing it
    try:
        model.save_pretrained(staging, safe_serialization=True)
        write_metadata(
            staging,
            name=config.name,
            base_model=config.base,
            role=config.role,
            prompt_format=config.prompt_format,
            job_id=run.job_id,
            registration=registration,
        )
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    adapter = studio_adapters.register(run.db, path=final, job_id=run.job_id, **registration)
    log.info("published adapter %r at %s (final loss %s)", config.name, final, summary["final_loss"])
    return adapter


def _evaluate_heldout(run: Run, adapter: Adapter, model) -> None:
    """Score the new adapter and its base on the examples training never saw, with the model this
    job trained (no second copy, same dtype and device); `model` None: a resumed job whose adapter
    was published before it stopped loads its base once (scores already stored are kept, not
    computed again). The adapter is already published, so a failure or a cancel here is logged
    and the job still succeeds."""
    from engine.generation import ChatEngine
    from training.data.datasets import write_jsonl
    from training.evaluation.evaluate import describe, evaluate, evaluate_with_base

    plan = run.plan
    if not plan.heldout or run.config.skip_evaluation:
        return
    try:
        job_rows.update(run.db, run.job_id, status="evaluating")
        examples = references(plan)
        if not examples:
            return
        # a file, so the adapters page can evaluate again on exactly these examples
        heldout = write_jsonl(examples, run.job_dir / "heldout.jsonl")
        run.cancellation.raise_if_requested()
        if model is None:
            engine = ChatEngine(
                plan.config.base,
                device=device_for(run),
                dtype=plan.config.dtype,
                trust_remote_code=plan.config.trust_remote_code,
            )
        else:
            engine = ChatEngine.after_training(
                model, plan.tokenizer, plan.spec, plan.model_dir, plan.config.prompt_format, adapter
            )
        rows = evaluate_with_base(
            run.db, adapter_name=run.config.name, data=str(heldout.path), engine=engine, dataset=heldout
        )
        who = [run.config.name, "base model"]
        parent = adapter_rows.by_id(run.db, plan.parent.id) if plan.parent else None
        if parent is not None:  # the same sentences, so the card compares child and parent pair by pair
            row, _ = evaluate(
                run.db, data=str(heldout.path), adapter_name=parent.name, engine=engine, dataset=heldout
            )
            rows.append(row)
            who.append(f"{parent.name} (parent)")
        for name, row in zip(who, rows, strict=True):
            log.info("held-out evaluation (%d examples), %s:\n%s", len(heldout.records), name, describe(row))
    except JobCancelled:
        log.warning("held-out evaluation cancelled; the adapter is published")
    except Exception as error:  # the adapter is fine; only its scores are missing
        log.warning("held-out evaluation failed: %s", errors.first_line(error))


def references(plan) -> list[dict]:
    """The held-out examples as instruction data with a reference answer: a preference job's are
    its prompts with the preferred answer (a judged answer only when it was judged good)."""
    if not plan.config.prefers:
        return plan.heldout
    preferred = []
    for record in plan.heldout:
        answer = record["chosen"] if "chosen" in record else record["completion"] if record["label"] else None
        if answer is not None:  # the prompt as the instruction: no role instruction is put before it
            preferred.append({"instruction": record["prompt"], "input": "", "output": answer})
    return preferred


def log_to_rank_file(job_dir: Path, rank: int) -> None:
    """Another rank's output, library warnings and tracebacks included, goes to its own log."""
    log_file = open(job_dir / f"rank{rank}.log", "ab", buffering=0)  # noqa: SIM115 (for the process's life)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(log_file.fileno(), stream.fileno())
    configure_logging(job_dir / f"rank{rank}.log", captured=True)


def configure_logging(log_path: Path, captured: bool) -> None:
    """When the app launched us, stdout already is the log file; from a shell, also write it."""
    handlers = [logging.StreamHandler(sys.stdout if captured else sys.stderr)]
    if not captured:
        handlers.append(logging.FileHandler(log_path, encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True
    )
