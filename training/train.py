"""Train a LoRA adapter as a standalone process that reports through the registry.

    python -m training.train --base builtin --data data/translator_sample.jsonl \
        --role translator --name med-zh-1
    python -m training.train --name med-zh-1 --resume      # after a crash, kill or cancel
    python -m training.train --config job.json             # settings from a JSON file
    torchrun --nproc-per-node 2 -m training.train ...      # the same, data-parallel on 2 processes

The request is checked by `training.jobs.lifecycle.check_request` (the same checks the training page runs)
before anything is created: a bad input prints one `error:` line, exits 2 and leaves no job,
folder or row. While training, progress, loss and a heartbeat go to the registry and a log to
`$TRANSLATOR_HOME/jobs/<id>/train.log`; checkpoints are saved every epoch (or --save-steps) and
marked complete once written. SIGTERM or Ctrl-C: while preparing, loading or waiting for the
device the job ends at once; while training, after the current micro-batch, with a checkpoint.
Each checkpoint is scored on the held-out examples as it is saved (training/trainer/checkpoints.py), and
the best one by the role's metric is published, not merely the last. The adapter is written to a
temporary folder, renamed into `$TRANSLATOR_HOME/adapters/<name>/`, registered, and then scored on
all the held-out examples with the same model, next to its base (status evaluating).

Under torchrun or accelerate launch (training/parallel/distributed.py), rank 0 alone touches the registry,
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

import os  # noqa: E402
import warnings  # noqa: E402

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # TRL's trainers report their use otherwise
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # ORPO lives in trl.experimental
warnings.filterwarnings("ignore", category=FutureWarning)  # deprecation chatter from library internals


from core import texts  # noqa: E402
from core.errors import UserError  # noqa: E402
from registry import connect  # noqa: E402
from registry import jobs as job_rows  # noqa: E402
from training.config import parse_settings  # noqa: E402
from training.parallel import distributed  # noqa: E402
from training.parallel.distributed import World  # noqa: E402
from training.trainer import job  # noqa: E402
from training.trainer.cancellation import Cancellation, JobCancelled  # noqa: E402
from training.trainer.job import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FAILED  # noqa: E402, F401  (exit codes, as before)


def main(argv: list[str] | None = None) -> int:
    world = World.from_env()
    cancellation = Cancellation()
    cancellation.install()  # before anything heavy: a cancel while preparing ends the job at once
    followers = job.Followers(world)
    try:
        if world.distributed:
            distributed.die_with_parent()
            distributed.join(world)
        if not world.main:
            return job.follow(world, cancellation)
        code = _main(argv, cancellation, followers)
        followers.stop(code)  # a request refused or cancelled before training: the others end too
        return code
    finally:
        cancellation.uninstall()
        distributed.leave()


def _main(argv: list[str] | None, cancellation: Cancellation, followers: job.Followers) -> int:
    settings, db, claimed = {}, None, []
    try:
        settings = parse_settings(argv)
        if globals().get("_signalled_early"):
            raise JobCancelled
        db = connect()
        if not settings.get("job_id") and (submitted := job.submit_to_cluster(db, settings)):
            print(
                texts.SLURM_SUBMITTED.format(
                    job=submitted.id, slurm=submitted.slurm_job_id, log=submitted.log_path
                )
            )
            return 0
        plan = job.plan_and_claim(db, settings, claimed)
        job.import_the_trainer(plan.config)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        if claimed:  # the app queued it, or it is a resume: show the reason there
            job_rows.finish(db, claimed[0].id, "failed", error=error.message or str(error))
        return EXIT_BAD_INPUT
    except JobCancelled:
        job_id = claimed[0].id if claimed else settings.get("job_id", 0)
        code = EXIT_CANCELLED
        if job_id:  # a cancel, or on a cluster Slurm's own signal (job.end_stopped tells them apart)
            code = job.end_stopped(db or connect(), job_id)
        said = "cancelled" if code == EXIT_CANCELLED else "stopped by Slurm"
        print(f"{said} before training started", file=sys.stderr)
        return code
    return job.run_job(
        db, plan, claimed[0], cancellation, followers, launched_by_app=bool(settings.get("job_id"))
    )


if __name__ == "__main__":
    sys.exit(main())
