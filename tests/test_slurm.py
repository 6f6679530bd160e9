"""Jobs on a real one-machine Slurm cluster (tests/slurm_cluster.py): submitted from the page's code
path and the command line, followed to their end, stopped, timed out, killed from outside; and the
requests the cluster would refuse, refused before a job row exists."""

import os
import signal
import subprocess
from pathlib import Path

import pytest

from core.errors import UserError
from registry import adapters as adapter_rows
from registry import jobs as job_rows
from studio import slurm, supervisor
from tests.conftest import SAMPLE, call_main, wait_for_status, wait_until
from training.jobs import lifecycle, panel

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def english(monkeypatch):
    monkeypatch.setenv("TRANSLATOR_LANG", "en")


def settings(tiny_model_dir, name: str, **extra) -> dict:
    return {
        "base": str(tiny_model_dir),
        "data": str(SAMPLE),
        "name": name,
        "batch_size": 1,
        "grad_accum": 1,
        "lr": 1e-3,
        "epochs": 1,
        "cluster": "slurm",
        **extra,
    }


def slurm_line(db, job_id: int) -> str:
    return panel.cluster_line(job_rows.get(db, job_id))


def test_a_job_from_the_page_runs_on_slurm_and_its_adapter_comes_home(db, slurm_cluster, tiny_model_dir):
    job = lifecycle.submit_form(db, settings(tiny_model_dir, "on-the-cluster"))
    assert job.slurm_job_id and (job.config["cluster"], job.status) == ("slurm", "queued")
    seen = []

    def watched():
        line = slurm_line(db, job.id)
        if line and line not in seen:
            seen.append(line)
        return job_rows.get(db, job.id).status == "succeeded" and line

    wait_until(watched, what="the cluster job to succeed", timeout=300, every=0.2)
    print("the panel's Slurm lines:", seen)
    assert f"Slurm job {job.slurm_job_id}: running on {slurm_cluster.host}" in seen
    adapter = adapter_rows.get(db, "on-the-cluster")
    assert adapter is not None and adapter_rows.folder_is_present(adapter) and adapter.job_id == job.id
    assert "training" in open(job_rows.get(db, job.id).log_path).read()


def test_the_command_line_submits_and_a_stop_cancels_with_a_checkpoint_that_resumes(
    db, slurm_cluster, tiny_model_dir
):
    flags = []
    for key, value in settings(tiny_model_dir, "cli-cluster", epochs=30, save_steps=4).items():
        flags += [f"--{key.replace('_', '-')}", str(value)]
    submitted = call_main("training.train", *flags)
    assert submitted.returncode == 0, submitted.stderr
    assert "Submitted: job" in submitted.stdout and "is Slurm job" in submitted.stdout
    job = job_rows.active_for_name(db, "cli-cluster")
    wait_until(lambda: (job_rows.get(db, job.id).step or 0) >= 6, what="step 6 on the cluster", timeout=240)
    assert lifecycle.cancel(db, job.id)
    ended = wait_for_status(
        db, job.id, lambda j: j.status not in job_rows.ACTIVE, what="the stop", timeout=120
    )
    assert ended.status == "cancelled", ended.error
    job_dir = Path(ended.job_dir)
    assert list((job_dir / "checkpoints").glob("checkpoint-*")), "the stop saved no checkpoint"
    resumed = call_main("training.train", "--resume", "--name", "cli-cluster", "--epochs", "1")
    assert resumed.returncode == 0, resumed.stderr
    again = job_rows.get(db, job.id)
    assert again.slurm_job_id and again.slurm_job_id != job.slurm_job_id
    done = wait_for_status(
        db, job.id, lambda j: j.status not in job_rows.ACTIVE, what="the resume", timeout=300
    )
    assert done.status == "succeeded", done.error
    assert "resuming from " + str(job_dir / "checkpoints" / "checkpoint-") in open(done.log_path).read()


def test_a_time_limit_ends_the_job_interrupted_with_a_checkpoint_and_a_resume_finishes_it(
    db, slurm_cluster, tiny_model_dir
):
    # Slurm signals the trainer 90 s before a 3-minute limit: 90 s into the job, when it trains
    # (its start took over 30 s with the whole suite running beside it)
    job = lifecycle.submit_form(
        db, settings(tiny_model_dir, "timed", epochs=200, save_steps=4, time_limit="3")
    )
    ended = wait_for_status(
        db, job.id, lambda j: j.status not in job_rows.ACTIVE, what="the limit", timeout=240
    )
    assert ended.status == "interrupted" and "reached its time limit" in ended.error
    assert (ended.step or 0) > 0
    lifecycle.resume(db, job.id, changes={"time_limit": "", "epochs": 1})
    done = wait_for_status(
        db, job.id, lambda j: j.status not in job_rows.ACTIVE, what="the resume", timeout=300
    )
    assert done.status == "succeeded", done.error


def test_jobs_killed_outside_the_studio_end_interrupted_and_say_why(db, slurm_cluster, tiny_model_dir):
    by_hand = lifecycle.submit_form(db, settings(tiny_model_dir, "scancelled", epochs=200, save_steps=4))
    wait_until(lambda: (job_rows.get(db, by_hand.id).step or 0) >= 2, what="training", timeout=240)
    subprocess.run(["scancel", str(by_hand.slurm_job_id)], check=True)
    ended = wait_for_status(
        db, by_hand.id, lambda j: j.status not in job_rows.ACTIVE, what="scancel", timeout=120
    )
    assert ended.status == "interrupted" and "Slurm stopped job" in ended.error

    killed = lifecycle.submit_form(db, settings(tiny_model_dir, "killed", epochs=200, save_steps=4))
    running = wait_until(
        lambda: (row := job_rows.get(db, killed.id)).step and row.pid and row, what="training", timeout=240
    )
    os.kill(running.pid, signal.SIGKILL)  # the step's trainer, as a node losing it would
    wait_until(
        lambda: (s := slurm.state(killed.slurm_job_id)) and s.ended, what="Slurm to end the job", timeout=120
    )
    assert lifecycle.get(db, killed.id).status == "interrupted"  # read, before anything wrote it
    assert job_rows.get(db, killed.id).status == "running"
    supervisor.reconcile(db)
    written = job_rows.get(db, killed.id)
    assert written.status == "interrupted" and f"Slurm job {killed.slurm_job_id} ended" in written.error


def test_what_the_cluster_would_refuse_is_refused_before_a_job_exists(
    db, slurm_cluster, tiny_model_dir, monkeypatch
):
    refusals = {
        "no such partition": (
            dict(partition="gpu-a100"),
            "The cluster has no partition 'gpu-a100': it has debug",
        ),
        "GPUs it lacks": (dict(gpus_per_node=2), "nodes have 0 GPUs each; the job asks for 2 per node"),
        "more nodes": (dict(nodes=3), "Partition debug has 1 nodes; the job asks for 3"),
        "a time limit in a wrong form": (dict(time_limit="1:2:3:4"), "'1:2:3:4' is not a Slurm time limit"),
        "beyond the partition's limit": (dict(time_limit="2-00"), "Slurm refused (sbatch)"),
    }
    for what, (extra, said) in refusals.items():
        with pytest.raises(UserError) as refused:
            lifecycle.submit_form(db, settings(tiny_model_dir, "refused", **extra))
        assert said in str(refused.value), f"{what}: {refused.value}"
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UserError, match="Slurm is not on this machine"):
        lifecycle.submit_form(db, settings(tiny_model_dir, "refused"))
    assert job_rows.list_all(db) == []
    jobs_dir = Path(os.environ["TRANSLATOR_HOME"]) / "jobs"
    assert not [p for p in jobs_dir.glob("*") if not p.name.startswith(".")]


def test_a_two_process_cluster_job_gives_the_losses_of_one_process(
    db, slurm_cluster, tiny_model_dir, single_process_run
):
    """torchrun with 2 CPU processes over gloo under srun, against one process: the same global
    batch (2 processes x 2 examples = 1 process x 2 x accumulation 2) gives the same losses."""
    parity = (
        "--max-steps",
        "4",
        "--lr",
        "1e-3",
        "--lora-dropout",
        "0",
        "--skip-evaluation",
        "--batch-size",
        "2",
    )
    common = ("--base", str(tiny_model_dir), "--data", str(SAMPLE), "--packing", "on", *parity)
    reference = single_process_run(*common, "--grad-accum", "2")
    job = lifecycle.submit_form(
        db,
        {
            **settings(tiny_model_dir, "two"),
            "max_steps": 4,
            "lora_dropout": 0.0,
            "skip_evaluation": True,
            "batch_size": 2,
            "packing": "on",
            "processes": 2,
        },
    )
    assert "torch.distributed.run --nnodes 1" in (Path(job.job_dir) / "slurm.sh").read_text()
    done = wait_for_status(db, job.id, lambda j: j.status not in job_rows.ACTIVE, what="the job", timeout=300)
    assert done.status == "succeeded", done.error
    one = [m["loss"] for m in job_rows.metrics_for(reference, adapter_rows.get(reference, "one").job_id)]
    two = [m["loss"] for m in job_rows.metrics_for(db, done.id)]
    assert len(one) == len(two) == 4
    for single, parallel in zip(one, two, strict=True):
        assert abs(parallel - single) <= 1e-4 * abs(single), (one, two)
    assert "rank 1 of 2" in (Path(done.job_dir) / "rank1.log").read_text()


def test_a_job_that_asked_for_requeue_resumes_by_itself_when_slurm_requeues_it(
    db, slurm_cluster, tiny_model_dir
):
    """A preemption, as Slurm does it to a requeueable job (`scontrol requeue`): the trainer saves a
    checkpoint, the job goes back into Slurm's queue, and its second run resumes and finishes."""
    job = lifecycle.submit_form(
        db, settings(tiny_model_dir, "requeued", epochs=3, save_steps=4, requeue=True)
    )
    assert "#SBATCH --requeue" in (Path(job.job_dir) / "slurm.sh").read_text()
    wait_until(lambda: (job_rows.get(db, job.id).step or 0) >= 6, what="training", timeout=240)
    subprocess.run(["scontrol", "requeue", str(job.slurm_job_id)], check=True)
    # Slurm holds a requeued job back for a while (its begin time); the test lets it start now
    wait_until(
        lambda: (s := slurm.state(job.slurm_job_id)) and s.state == "PENDING", what="requeued", timeout=60
    )
    subprocess.run(["scontrol", "update", f"JobId={job.slurm_job_id}", "StartTime=now"], check=True)
    done = wait_for_status(
        db, job.id, lambda j: j.status not in job_rows.ACTIVE, what="the second run", timeout=300
    )
    assert done.status == "succeeded", done.error
    assert (
        "Restarts=1"
        in subprocess.run(
            ["scontrol", "show", "job", str(job.slurm_job_id)], capture_output=True, text=True
        ).stdout
    )
    assert (
        "resuming from " + str(Path(done.job_dir) / "checkpoints" / "checkpoint-")
        in open(done.log_path).read()
    )


def test_a_job_slurm_no_longer_knows_reads_and_is_written_interrupted(db, slurm_cluster):
    """A Slurm job purged from the controller (or lost with its node) while our row says running."""
    job = job_rows.create(
        db, adapter_name="forgotten", config={"cluster": "slurm"}, status="running", slurm_job_id=987654
    )
    assert slurm.state(987654) is None
    seen = lifecycle.get(db, job.id)
    assert seen.status == "interrupted" and "Slurm no longer knows job 987654" in seen.error
    assert job_rows.get(db, job.id).status == "running"  # reading wrote nothing
    assert ("jobs", job.id) in supervisor.reconcile(db)
    assert job_rows.get(db, job.id).status == "interrupted"
