"""Train a LoRA adapter as a standalone process that reports through the registry.

    python -m training.train --base builtin --data data/translator_sample.jsonl \
        --role translator --name med-zh-1
    python -m training.train --name med-zh-1 --resume      # after a crash, kill or cancel
    python -m training.train --config job.json             # settings from a JSON file

The data is validated before anything is created: a bad input prints one `error:` line, exits 2
and leaves no job, folder or row. While training, progress, loss and a heartbeat go to the registry
and a log to `$TRANSLATOR_HOME/jobs/<id>/train.log`; checkpoints are saved every epoch. SIGTERM
saves a checkpoint and marks the job cancelled. The adapter is written to a temporary folder,
renamed into `$TRANSLATOR_HOME/adapters/<name>/` and only then registered as ready.

Exit codes: 0 published, 1 the job failed, 2 bad input (nothing created), 143 cancelled.
"""

import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", category=FutureWarning)  # deprecation chatter from library internals


from engine import models  # noqa: E402
from engine.adapters import write_metadata  # noqa: E402
from engine.formats import FORMATS  # noqa: E402
from engine.roles import Role, get_role  # noqa: E402
from registry import adapters as adapter_rows  # noqa: E402
from registry import connect, home  # noqa: E402
from registry import jobs as job_rows  # noqa: E402
from registry.errors import UserError  # noqa: E402
from registry.names import check_name  # noqa: E402
from training.batching import (  # noqa: E402
    check_choice,
    choose_checkpointing,
    choose_packing,
    choose_recipe,
    collator,
    prepare_model,
    sampling_strategy,
)
from training.config import TrainConfig, check_keys, parse_config  # noqa: E402
from training.data import Dataset, load_dataset, split_holdout  # noqa: E402
from training.examples import TokenizedDataset, tokenize_dataset  # noqa: E402

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 1, 2, 143

log = logging.getLogger("translator.train")


def main(argv: list[str] | None = None) -> int:
    config = None
    try:
        config = parse_config(argv)
        plan = _prepare(config)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        if config is not None and config.job_id:  # the app queued it: show the reason there
            job_rows.finish(connect(), config.job_id, "failed", error=str(error))
        return EXIT_BAD_INPUT
    return _run(plan)


@dataclass
class _Plan:
    """Everything checked and loaded before the job row exists (or, for a queued job, is claimed)."""

    config: TrainConfig
    job: dict | None
    role: Role
    dataset: Dataset
    heldout: list[dict]  # never trained on; evaluated after publishing
    spec: models.ModelSpec
    model_dir: Path
    tokenizer: object
    prompt_format: str
    tokenized: TokenizedDataset
    packing: bool


def _prepare(config: TrainConfig) -> _Plan:
    db = connect()
    job = None
    if config.job_id:
        job = job_rows.get(db, config.job_id)
        if job is None or job["status"] != "queued":
            raise UserError(f"Job {config.job_id} does not exist or is not queued.")
        stored = check_keys(job["config"], f"job {job['id']}")
        config = TrainConfig(**{**stored, "job_id": job["id"], "resume": config.resume})
    elif config.resume:
        name = check_name(config.name)
        job = job_rows.latest_resumable(db, name)
        if job is None:
            raise UserError(
                f"Nothing to resume for {name!r}: no interrupted, cancelled or failed job has that name."
            )
        _refuse_if_running(db, name)
        defaults = TrainConfig().as_dict()
        given = {k: v for k, v in config.as_dict().items() if v != defaults[k]}
        config = TrainConfig(**{**check_keys(job["config"], f"job {job['id']}"), **given, "resume": True})
    name = check_name(config.name)
    if not config.resume:
        _refuse_taken_name(db, name, queued_job=job)
    role = get_role(db, config.role)
    if not config.data:
        raise UserError("No dataset given: pass --data PATH to a .json, .jsonl or .csv file.")
    dataset = load_dataset(config.data, limit=config.limit or None)
    if config.resume and dataset.fingerprint != job["dataset_fingerprint"]:
        raise UserError(
            f"{dataset.name} changed since job {job['id']} started (fingerprint "
            f"{job['dataset_fingerprint']} → {dataset.fingerprint}): start a new job instead."
        )
    dataset, heldout = split_holdout(dataset, config.holdout, config.seed)
    if config.prompt_format and config.prompt_format not in FORMATS:
        raise UserError(f"Unknown prompt format {config.prompt_format!r}: use {', '.join(FORMATS)}.")
    check_choice("gradient-checkpointing", config.gradient_checkpointing)
    check_choice("packing", config.packing)
    spec = models.parse_model_id(config.base)
    model_dir = models.resolve_model_dir(spec)
    packing = choose_packing(config.packing, models.model_type(model_dir), config.trust_remote_code)
    tokenizer = models.load_tokenizer(model_dir, spec, config.trust_remote_code)
    prompt_format = config.prompt_format or models.default_prompt_format(spec, model_dir, tokenizer)
    tokenized = tokenize_dataset(dataset, tokenizer, prompt_format, role, config.max_length)
    config = replace(config, name=name, base=spec.model_id, prompt_format=prompt_format)
    return _Plan(
        config, job, role, dataset, heldout, spec, model_dir, tokenizer, prompt_format, tokenized, packing
    )


def _refuse_taken_name(db, name: str, queued_job: dict | None) -> None:
    if adapter_rows.get(db, name) is not None:
        raise UserError(f"An adapter named {name!r} already exists: pick another --name.")
    if (home.adapters_dir() / name).exists():
        raise UserError(
            f"The folder {home.adapters_dir() / name} exists but is not registered: "
            "move it away or pick another --name."
        )
    active = job_rows.active_for_name(db, name)
    if active is not None and (queued_job is None or active["id"] != queued_job["id"]):
        _refuse_if_running(db, name)


def _refuse_if_running(db, name: str) -> None:
    from training.jobs import refresh_liveness

    refresh_liveness(db)
    active = job_rows.active_for_name(db, name)
    if active is not None:
        raise UserError(f"Job {active['id']} is already training {name!r} (status {active['status']}).")


def _run(plan: _Plan) -> int:
    from training.progress import Cancellation, Heartbeat  # torch loads only once the input is known good

    config = plan.config
    db = connect()
    job = plan.job or job_rows.create(
        db,
        adapter_name=config.name,
        config=config.as_dict(),
        base_model=config.base,
        role=config.role,
        dataset_path=str(Path(config.data).expanduser().resolve()),
        dataset_name=plan.dataset.name,
        dataset_fingerprint=plan.dataset.fingerprint,
    )
    job_dir = home.jobs_dir() / str(job["id"])
    job_dir.mkdir(parents=True, exist_ok=True)
    log_path = job_dir / "train.log"
    _configure_logging(log_path, captured=bool(config.job_id))
    job_rows.update(
        db,
        job["id"],
        status="queued",
        pid=os.getpid(),
        started_at=time.time(),
        heartbeat_at=time.time(),
        finished_at=None,
        error=None,
        config=_json(config.as_dict()),
        log_path=str(log_path),
        job_dir=str(job_dir),
        num_examples=len(plan.tokenized.examples),
        num_truncated=plan.tokenized.num_truncated,
    )
    (job_dir / "config.json").write_text(_json(config.as_dict(), indent=2), encoding="utf-8")
    cancellation = Cancellation()
    cancellation.install()
    heartbeat = Heartbeat(job["id"])
    heartbeat.start()
    device_lock = _wait_for_the_device(db, job["id"], cancellation)
    if device_lock is None:
        heartbeat.stop()
        job_rows.finish(db, job["id"], "cancelled")
        return EXIT_CANCELLED
    log.info("job %s: training %r on %s (%s)", job["id"], config.name, config.base, plan.prompt_format)
    log.info("data %s [%s]: %s", plan.dataset.name, plan.dataset.fingerprint, plan.tokenized.summary())
    try:
        outcome = _train(plan, job, job_dir, cancellation, db)
        if outcome == "cancelled":
            job_rows.finish(db, job["id"], "cancelled")
            log.info("cancelled; a checkpoint was saved: resume with --resume --name %s", config.name)
            return EXIT_CANCELLED
        if plan.heldout and not config.skip_evaluation:
            _evaluate_heldout(plan, job_dir, db)
        return 0
    except BaseException as error:
        message = _one_line(error)
        job_rows.finish(db, job["id"], "failed", error=message)
        log.exception("training failed: %s", message)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        heartbeat.stop()
        device_lock.close()


def _wait_for_the_device(db, job_id: int, cancellation):
    """One training at a time per home: two jobs on one GPU (or two CPU cores) fight over memory
    and each runs at half speed or fails. A later job stays queued, heartbeating, until the device
    is free; cancelling it while it waits ends it."""
    lock_file = open(home.jobs_dir() / ".device.lock", "w")  # noqa: SIM115 (held for the whole run)
    try:
        import fcntl
    except ImportError:  # Windows: no queue, jobs run side by side
        return lock_file
    announced = False
    while True:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not announced:
                job_rows.update(db, job_id, status="queued")
                log.info("waiting for the running job to finish (one training at a time)")
                announced = True
            if cancellation.requested.wait(1.0):
                lock_file.close()
                return None
    job_rows.update(db, job_id, status="running", started_at=time.time())
    return lock_file


def _train(plan: _Plan, job: dict, job_dir: Path, cancellation, db) -> str:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint

    from training.progress import RegistryProgress, TokenCounter

    config = plan.config
    device = config.device or models.choose_device()
    dtype = models.parse_dtype(config.dtype, device)
    torch.manual_seed(config.seed)
    model = models.load_model(
        plan.model_dir, plan.spec, device=device, dtype=dtype, trust_remote_code=config.trust_remote_code
    )
    if cancellation.requested.is_set():
        return "cancelled"
    targets = lora_targets(model, config.target_modules)
    checkpointing = choose_checkpointing(config.gradient_checkpointing, device, model.num_parameters())
    recipe = choose_recipe(plan.packing, checkpointing)
    prepare_model(model, recipe)
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
    )
    model = get_peft_model(model, lora)
    trainable, total = model.get_nb_trainable_parameters()
    log.info(
        "LoRA on %s: %s trainable of %s parameters; %s %s; %s",
        ",".join(targets),
        f"{trainable:,}",
        f"{total:,}",
        device,
        str(dtype).removeprefix("torch."),
        recipe.describe(),
    )
    checkpoints = job_dir / "checkpoints"
    arguments = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
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
        train_sampling_strategy=sampling_strategy(recipe),
    )
    counter = TokenCounter(collator(plan.tokenizer, recipe))
    progress = RegistryProgress(db, job["id"], counter, cancellation)
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=[{"input_ids": e.input_ids, "labels": e.labels} for e in plan.tokenized.examples],
        data_collator=counter,
        callbacks=[progress],
    )
    trainer.remove_callback(PrinterCallback)  # our callback logs each step already
    resume_from = get_last_checkpoint(str(checkpoints)) if config.resume and checkpoints.is_dir() else None
    if config.resume:
        log.info("resuming from %s", resume_from or "the start (no checkpoint was saved)")
    result = trainer.train(resume_from_checkpoint=resume_from)
    if cancellation.requested.is_set():
        return "cancelled"
    _publish(plan, job, model, result, progress, db, recipe)
    return "succeeded"


def _publish(plan: _Plan, job: dict, model, result, progress, db, recipe) -> None:
    """Temporary folder → rename → row: no row ever points at a half-written folder."""
    config = plan.config
    adapters_dir = home.adapters_dir()
    final = adapters_dir / config.name
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{config.name}-", dir=adapters_dir))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        write_metadata(
            staging,
            name=config.name,
            base_model=config.base,
            role=config.role,
            prompt_format=plan.prompt_format,
            job_id=job["id"],
        )
        if final.exists():
            raise UserError(f"{final} appeared while training: the adapter was not published.")
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    metrics = {
        "final_loss": progress.last_loss,
        "train_loss": result.training_loss,
        "steps": result.global_step,
        "train_seconds": result.metrics.get("train_runtime"),
        "tokens_per_second": progress.mean_tokens_per_second(),
        "num_tokens": plan.tokenized.num_tokens,
        "num_target_tokens": plan.tokenized.num_target_tokens,
        "num_truncated": plan.tokenized.num_truncated,
        "num_dropped": plan.tokenized.num_dropped,
        "num_heldout": len(plan.heldout),
        "recipe": recipe.describe(),
    }
    hyperparameters = {
        key: getattr(config, key)
        for key in (
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
    }
    adapter_rows.register(
        db,
        name=config.name,
        role=config.role,
        base_model=config.base,
        prompt_format=plan.prompt_format,
        path=final,
        hyperparameters=hyperparameters,
        dataset_name=plan.dataset.name,
        dataset_fingerprint=plan.dataset.fingerprint,
        num_examples=len(plan.tokenized.examples),
        metrics=metrics,
        job_id=job["id"],
    )
    job_rows.finish(db, job["id"], "succeeded")
    log.info("published adapter %r at %s (final loss %s)", config.name, final, progress.last_loss)


def _evaluate_heldout(plan: _Plan, job_dir: Path, db) -> None:
    """Score the new adapter and its base on the examples training never saw. The adapter is already
    published, so a failure here is logged and does not fail the job."""
    import gc

    from engine.generation import ChatEngine
    from training.evaluate import describe, evaluate_with_base

    path = job_dir / "heldout.jsonl"
    path.write_text(
        "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in plan.heldout), encoding="utf-8"
    )
    gc.collect()  # the training copy of the model is no longer needed
    try:
        engine = ChatEngine(plan.config.base, device=plan.config.device or None)
        rows = evaluate_with_base(db, adapter_name=plan.config.name, data=str(path), engine=engine)
        for who, row in zip((plan.config.name, "base model"), rows, strict=True):
            log.info("held-out evaluation (%d examples), %s:\n%s", len(plan.heldout), who, describe(row))
    except Exception as error:  # the adapter is fine; only its scores are missing
        log.warning("held-out evaluation failed: %s", _one_line(error))


def lora_targets(model, requested: str) -> list[str]:
    wanted = [name.strip() for name in requested.split(",") if name.strip()]
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [name for name in wanted if name in present]
    if not targets:
        raise UserError(
            f"None of the LoRA target modules {', '.join(wanted)} exist in this model: "
            "pass --target-modules with names from the model."
        )
    return targets


def _configure_logging(log_path: Path, captured: bool) -> None:
    """When the app launched us, stdout already is the log file; from a shell, also write it."""
    handlers = [logging.StreamHandler(sys.stdout if captured else sys.stderr)]
    if not captured:
        handlers.append(logging.FileHandler(log_path, encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True
    )


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__


def _json(value, indent=None) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=indent)


if __name__ == "__main__":
    sys.exit(main())
