"""The fit: one process's model, LoRA and Trainer with its callbacks, from a claimed job's plan to
the trained PEFT model (or None when cancelled). training.trainer.job calls it on every rank."""

import gc
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from engine import loading
from training.config import TrainConfig
from training.data import batching
from training.jobs import plans
from training.parallel import distributed, launchers, memory
from training.parallel.distributed import World
from training.trainer.cancellation import Cancellation

log = logging.getLogger("translator.train")


@dataclass
class Run:
    """What one trainer process works with once its job is claimed."""

    db: object  # None in a follower rank: only rank 0 writes the registry
    plan: plans.Plan
    job_id: int
    job_dir: Path
    cancellation: Cancellation
    world: World = World()
    mlflow: object = None  # training.jobs.tracking.MlflowRun when the job sends to MLflow (rank 0)

    @property
    def config(self) -> TrainConfig:
        return self.plan.config


def device_for(run: Run) -> str:
    """Where this process trains and evaluates: its rank's GPU, the configured device, or the best one."""
    return run.world.device(run.config.device or loading.choose_device())


def fit(run: Run, sweeping: bool = False):
    """The trained PEFT model and a summary of the training, or (None, None) when cancelled.
    `sweeping`: one rate of a learning-rate sweep (training.jobs.sweep): no checkpoints, no scoring."""
    import torch
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from training.jobs import tracking
    from training.trainer import grpo, preference
    from training.trainer.checkpoints import choose_and_restore
    from training.trainer.progress import (
        CheckpointScorer,
        MlflowSteps,
        RegistryProgress,
        StepAgreement,
        TokenCounter,
        newest_complete_checkpoint,
    )

    config, plan, world = run.config, run.plan, run.world
    device = device_for(run)
    dtype = loading.parse_dtype(config.dtype, device)
    torch.manual_seed(config.seed)
    # rank 0 decides before any weights load (what is free then is what training can have), and
    # every rank follows it: the ranks' recipes must be the same
    fitted = distributed.share(
        world, memory.choose_for(config, plan, device, dtype, world) if world.main else None
    )
    log.info("memory: %s (%s)", fitted.reason, fitted.estimate.describe())
    model = loading.load_model(
        plan.model_dir,
        plan.spec,
        device=device,
        dtype=dtype,
        trust_remote_code=config.trust_remote_code,
        quantize=config.quantize,
    )
    if config.quantize != "none":
        from peft import prepare_model_for_kbit_training

        # PEFT's k-bit preparation (norms and embeddings in fp32, the base frozen); checkpointing
        # is the recipe's to switch, below
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        quantised = {
            type(m).__name__ for m in model.modules() if type(m).__module__.startswith("bitsandbytes")
        }
        log.info("base quantised: %s (%s)", config.quantize, ", ".join(sorted(quantised)) or "no layer")
    checkpointing = fitted.checkpointing
    if config.prefers or config.rewarded:  # TRL's trainers pad their own batches
        recipe = batching.Recipe(packing=False, group_by_length=False, gradient_checkpointing=checkpointing)
    else:
        recipe = batching.choose_recipe(plan.packing, checkpointing)
    batching.prepare_model(model, recipe)
    target_logits_only = not (config.prefers or config.rewarded) and batching.keeps_target_logits_only(model)
    micro_batch, accumulation = fitted.micro_batch, fitted.accumulation
    if config.prefers:
        micro_batch, accumulation = preference.micro_batches(config, micro_batch, accumulation)
    if config.rewarded:  # a micro-batch is one prompt's group of completions
        micro_batch, accumulation = grpo.micro_batches(config, world.size)
    strategy = launchers.strategy_arguments(config.strategy, model)
    model = adapt(model, config, plan)
    trainable, total = model.get_nb_trainable_parameters()
    log.info(
        "%s on %s: %s trainable of %s parameters; %s %s; %s; %d process(es) x %d examples x %d "
        "accumulated = %d examples per step",
        f"LoRA continued from {plan.parent.name!r}" if plan.parent else "LoRA",
        ",".join(model.peft_config[preference.TRAINED].target_modules),
        f"{trainable:,}",
        f"{total:,}",
        device,
        str(dtype).removeprefix("torch."),
        f"{config.method.upper()} ({config.loss or 'own loss'}, beta {config.beta:g}); {recipe.describe()}"
        if config.prefers
        else f"GRPO, completions per micro-batch; {recipe.describe()}"
        if config.rewarded
        else recipe.describe(),
        world.size,
        micro_batch,
        accumulation,
        world.size * micro_batch * accumulation,
    )
    checkpoints = run.job_dir / "checkpoints"
    arguments = dict(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=micro_batch,
        gradient_accumulation_steps=accumulation,
        learning_rate=config.lr,
        logging_steps=1,
        save_strategy="no" if sweeping else "steps" if config.save_steps else "epoch",
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
        ddp_find_unused_parameters=False,  # every LoRA weight gets a gradient in every step
        **strategy,
    )
    counter = TokenCounter(None)
    agreement = StepAgreement(world, counter, run.cancellation)
    progress = RegistryProgress(run.db, run.job_id, agreement) if world.main else None
    scorer = None
    # a sharded model answers only when every rank runs it: each scores, rank 0 decides and stores
    together = world if config.strategy == "fsdp" else None
    if (world.main or together) and not config.skip_evaluation and not sweeping:
        scorer = CheckpointScorer(run.db, run.job_id, run.job_dir, plan, run.cancellation, together)
    # the agreement first: all ranks have saved before rank 0 marks a checkpoint complete
    callbacks = [callback for callback in (agreement, progress, scorer) if callback is not None]
    if config.prefers:
        if config.method == "orpo":
            preference.add_reference(model, plan)
        # checkpointing is already on in the model (prepare_model); TRL's own default would add it again
        trainer = preference.make_trainer(
            model, {**arguments, "gradient_checkpointing": False}, plan, callbacks
        )
    elif config.rewarded:
        records = plans.trained_records(plan)
        trainer = grpo.make_trainer(
            model, {**arguments, "gradient_checkpointing": False}, plan, records, callbacks
        )
    else:
        collator = batching.collator(plan.tokenizer, recipe)
        trainer = batching.make_trainer(
            model=model,
            args=TrainingArguments(**arguments, train_sampling_strategy=batching.sampling_strategy(recipe)),
            train_dataset=[{"input_ids": e.input_ids, "labels": e.labels} for e in plan.tokenized.examples],
            data_collator=batching.TargetLogitsOnly(collator) if target_logits_only else collator,
            compute_loss_func=batching.target_loss if target_logits_only else None,
            callbacks=callbacks,
            sharded_on_the_cpu=config.strategy == "fsdp" and device == "cpu",
        )
    counter.collator, trainer.data_collator = trainer.data_collator, counter
    if progress is not None:
        progress.trainer = trainer
    trainer.remove_callback(PrinterCallback)  # our callback logs each step already
    if config.strategy == "fsdp" and not trainer.is_fsdp_enabled:
        raise UserError("ERR_FSDP_NEEDS_PROCESSES")
    # rank 0 alone looks (it removes incomplete ones), every rank resumes from what it found
    resume_from = distributed.share(
        world, newest_complete_checkpoint(checkpoints) if config.resume and world.main else None
    )
    if config.resume:
        log.info("resuming from %s", resume_from or "the start (no complete checkpoint was saved)")
    if world.main and not sweeping:
        resumed_step = int(resume_from.name.rsplit("-", 1)[1]) if resume_from else None
        board = tracking.tensorboard_callback(run.job_dir, resumed_step)
        if board is not None:
            trainer.add_callback(board)
        if run.mlflow is not None:
            trainer.add_callback(MlflowSteps(run.mlflow))
    with run.cancellation.deferred():
        if resume_from is not None and already_finished(resume_from):
            summary = summary_from_checkpoint(model, resume_from)
            if scorer is not None:
                scorer.score_if_missing(model, resume_from)
        else:
            log.info("memory before the first step: %s", memory.describe_process())
            try:
                result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            except Exception as error:
                if not memory.is_out_of_memory(error):
                    raise
                raise memory.out_of_memory(config, micro_batch, checkpointing, device) from error
            summary = {
                "final_loss": progress.last_loss if progress else None,
                "train_loss": result.training_loss,
                "steps": result.global_step,
                "train_seconds": result.metrics.get("train_runtime"),
                "tokens_per_second": progress.mean_tokens_per_second() if progress else None,
                **peak_memory(device),
                **fitted.as_metrics(),
            }
            log.info(
                "trained as %s (%s); peak memory of this process: %s",
                type(trainer.model_wrapped).__name__,
                config.strategy,
                ", ".join(f"{key} {value:,.0f}" for key, value in peak_memory(device).items()),
            )
    sharded = trainer.is_fsdp_enabled
    del trainer  # its optimizer state is not needed for publishing or evaluating
    gc.collect()
    if sharded:
        model = _unsharded(run, model)
    if run.cancellation.requested.is_set():
        return None, None
    if not world.main or sweeping:
        return model, summary
    choice = choose_and_restore(run.db, run.job_id, model, final_step=summary["steps"])
    preference.drop_reference(model)
    return model, {**summary, **(choice.as_metrics() if choice else {}), "recipe": recipe.describe()}


def _unsharded(run: Run, model):
    """After FSDP: every rank gathers the trained LoRA weights whole; rank 0 loads the base again,
    unsharded, with them (publishing and evaluation read the whole model); the others are done."""
    from training.parallel import sharding

    held, total = sharding.held_parameters(model)
    log.info("FSDP: this process held %s of the model's %s parameters", f"{held:,}", f"{total:,}")
    trained = sharding.gather_trained(model)
    del model
    gc.collect()
    if not run.world.main or run.cancellation.requested.is_set():
        return None
    config, plan = run.config, run.plan
    device = device_for(run)
    whole = loading.load_model(
        plan.model_dir,
        plan.spec,
        device=device,
        dtype=loading.parse_dtype(config.dtype, device),
        trust_remote_code=config.trust_remote_code,
    )
    whole = adapt(whole, config, plan)
    missing = whole.load_state_dict(trained, strict=False).unexpected_keys
    if missing:  # the sharded model's names are the plain one's: anything else is a bug, said loudly
        raise RuntimeError(f"gathered weights the unsharded model does not have: {missing[:3]}")
    return whole


def adapt(model, config: TrainConfig, plan: plans.Plan):
    """The model with the LoRA to train: the parent's, to continue it, or a new one."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if plan.parent is not None:
        return PeftModel.from_pretrained(model, str(plan.parent.path), is_trainable=True)
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=lora_targets(model, config.target_modules),
    )
    return get_peft_model(model, lora)


def peak_memory(device: str) -> dict:
    import torch

    from training.parallel.memory import own_peak_rss

    peak = {"peak_rss_mb": own_peak_rss() / 2**20}
    if device.startswith("cuda"):
        peak["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def already_finished(checkpoint: Path) -> bool:
    """The checkpoint holds the last step: training it again would run one step past the end."""
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return state["global_step"] >= state["max_steps"] > 0


def summary_from_checkpoint(model, checkpoint: Path) -> dict:
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


def lora_targets(model, requested: str) -> list[str]:
    wanted = [name.strip() for name in requested.split(",") if name.strip()]
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [name for name in wanted if name in present]
    if not targets:
        raise UserError("ERR_NO_TARGETS", wanted=", ".join(wanted))
    return targets
