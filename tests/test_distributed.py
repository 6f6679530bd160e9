"""The trainer under torchrun: 2 CPU processes over gloo on the tiny model, as real processes.

Data parallelism changes nothing but who computes: the same global batch gives the same losses and
weights. Rank 0 alone writes rows, checkpoints and the adapter; a cancel stops both ranks at the
same step; a dead rank ends the job interrupted, with no process left, and it resumes on one."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core import texts
from registry import adapters, checkpoints, connect, jobs
from studio.supervisor import process_alive
from tests.conftest import PROJECT_ROOT, SAMPLE, free_port, run_module, wait_for_status, wait_until
from training.config import TrainConfig
from training.jobs import lifecycle
from training.parallel import launchers

PARITY = ("--max-steps", "4", "--lr", "1e-3", "--lora-dropout", "0", "--skip-evaluation", "--batch-size", "2")


def _torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    command = launchers.trainer_command(launchers.Launch(processes=processes), [str(a) for a in args])
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


def _losses(db, adapter) -> list[float]:
    return [m["loss"] for m in jobs.metrics_for(db, adapter.job_id)]


def _trained_alike(db, reference) -> dict:
    """The adapter "two" of `db` and the reference's "one": 4 steps each, equal losses, and the same
    LoRA weights (every key, whole shapes) within 1e-4 relative."""
    rows = {"one": adapters.get(reference, "one"), "two": adapters.get(db, "two")}
    losses = {"one": _losses(reference, rows["one"]), "two": _losses(db, rows["two"])}
    assert len(losses["one"]) == len(losses["two"]) == 4
    for single, parallel in zip(losses["one"], losses["two"], strict=True):
        assert abs(parallel - single) <= 1e-4 * abs(single), losses
    weights = {name: load_file(Path(row.path) / "adapter_model.safetensors") for name, row in rows.items()}
    assert weights["one"].keys() == weights["two"].keys()
    for key, single in weights["one"].items():
        assert weights["two"][key].shape == single.shape, key
        change = (weights["two"][key] - single).norm() / single.norm()
        assert change <= 1e-4, (key, change.item())
    assert not torch.equal(weights["one"][next(iter(weights["one"]))], torch.zeros(1))
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("packing", ["on", "off"])  # packed rows, or padded length-grouped batches
def test_two_processes_give_the_losses_and_weights_of_one(home, tiny_model_dir, packing, single_process_run):
    common = ("--base", str(tiny_model_dir), "--data", str(SAMPLE), "--packing", packing, *PARITY)
    reference = single_process_run(*common, "--grad-accum", "2")
    two = _torchrun(*common, "--name", "two", "--grad-accum", "1")  # 2 processes x 2 = the same 4 per step
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]

    db = connect()
    rows = _trained_alike(db, reference)

    # rank 0 alone wrote: one job row, one checkpoint set, one adapter; rank 1 has its own log
    job = jobs.get(db, rows["two"].job_id)
    assert [j.adapter_name for j in jobs.list_all(db)].count("two") == 1
    job_dir = Path(job.job_dir)
    (checkpoint,) = (job_dir / "checkpoints").glob("checkpoint-*")
    assert (checkpoint / "translator-complete.json").is_file()
    assert sorted(p.name for p in checkpoint.glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]
    assert "rank 1 of 2" in (job_dir / "rank1.log").read_text()
    assert lifecycle.rank_logs(job) == [(1, job_dir / "rank1.log")]  # what the job panel shows
    assert job.tokens_per_second > 0
    assert rows["two"].metrics["steps"] == 4


def _submit(db, tiny_model_dir, name: str, **settings) -> dict:
    settings = {
        "processes": 2,
        "batch_size": 1,
        "grad_accum": 1,
        "lr": 1e-3,
        "skip_evaluation": True,
        **settings,
    }
    config = TrainConfig(base=str(tiny_model_dir), data=str(SAMPLE), name=name, **settings)
    return lifecycle.submit(db, config)


def _rank1_pid(job_dir: Path) -> int:
    log = job_dir / "rank1.log"
    text = wait_until(
        lambda: log.is_file() and re.search(r"rank 1 of 2 \(pid (\d+)\)", log.read_text()), what="rank 1"
    )
    return int(text.group(1))


def _all_gone(pids) -> bool:
    return not any(process_alive(pid) for pid in pids)


@pytest.mark.slow
def test_a_cancel_stops_both_ranks_at_the_same_step_with_one_checkpoint(home, db, tiny_model_dir):
    job = _submit(db, tiny_model_dir, "stopped-two", max_steps=400)
    launcher = job.pid
    running = wait_for_status(db, job.id, lambda j: j.step >= 3, what="step 3")
    job_dir = Path(running.job_dir)
    rank0, rank1 = running.pid, _rank1_pid(job_dir)
    assert len({launcher, rank0, rank1}) == 3  # the row follows rank 0, not the launcher

    assert lifecycle.cancel(db, job.id)  # SIGTERM to rank 0 alone
    ended = wait_for_status(db, job.id, lambda j: j.status not in jobs.ACTIVE, what="end")
    assert ended.status == "cancelled", ended
    wait_until(lambda: _all_gone([launcher, rank0, rank1]), timeout=60, what="every process to exit")
    (checkpoint,) = (job_dir / "checkpoints").glob("checkpoint-*")
    step = int(checkpoint.name.split("-")[1])
    assert (checkpoint / "translator-complete.json").is_file() and 3 <= step < 400
    rank1_steps = re.findall(r"rank 1: step (\d+)/", (job_dir / "rank1.log").read_text())
    assert int(rank1_steps[-1]) == step  # rank 1 stopped where rank 0 saved
    assert adapters.get(db, "stopped-two") is None


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_interrupted_and_one_process_resumes_it(home, db, tiny_model_dir):
    job = _submit(db, tiny_model_dir, "lost-rank", max_steps=24, save_steps=5)
    launcher = job.pid
    running = wait_for_status(db, job.id, lambda j: j.step >= 7, what="step 7")
    job_dir = Path(running.job_dir)
    rank0, rank1 = running.pid, _rank1_pid(job_dir)
    subprocess.run(["kill", "-9", str(rank1)], check=True)

    ended = wait_for_status(db, job.id, lambda j: j.status not in jobs.ACTIVE, what="end")
    assert ended.status == "interrupted", ended
    wait_until(lambda: _all_gone([launcher, rank0, rank1]), timeout=60, what="no process left behind")
    assert adapters.get(db, "lost-rank") is None

    resumed = run_module("training.train", "--name", "lost-rank", "--resume", "--processes", "1")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert jobs.get(db, job.id).status == "succeeded"
    assert adapters.get(db, "lost-rank").metrics["steps"] == 24
    assert "resuming from" in (job_dir / "train.log").read_text()
    assert jobs.get(db, job.id).config["processes"] == 1  # resumed on one process, as asked


def test_launch_commands_for_one_machine_several_and_slurm():
    args = ["--base", "builtin", "--name", "n"]
    assert launchers.trainer_command(launchers.Launch(), args, "py") == ["py", "-m", "training.train", *args]
    assert launchers.trainer_command(launchers.Launch(processes=4), args, "py")[:6] == [
        "py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4",
    ]  # fmt: skip
    nodes = launchers.node_commands(launchers.Launch(processes=8, nodes=2, host="gpu1"), args, "n")
    assert len(nodes) == 2 and all("--master-addr gpu1 --master-port 29500" in c for c in nodes)
    assert "--node-rank 0" in nodes[0] and "--node-rank 1" in nodes[1]
    script = launchers.sbatch_script(launchers.Launch(processes=8, nodes=2), args, "n", Path("/p"))
    assert (
        "#SBATCH --nodes=2" in script and "#SBATCH --gpus-per-node=8" in script and "srun bash -c" in script
    )
    assert '--node-rank "$SLURM_NODEID"' in script and '--master-addr "$HEAD_NODE"' in script
    assert launchers.batch_sizes(4, 2, 3) == (8, 24)
    from training.config import parse_config

    asked = TrainConfig(base="builtin", data="/d.jsonl", name="n", lr=2e-4, epochs=1.5, skip_evaluation=True)
    assert parse_config(launchers.trainer_flags(asked)) == asked  # the shown command runs this very job
    for stage in (2, 3):
        config = launchers.deepspeed_config(stage)
        assert config["zero_optimization"]["stage"] == stage and config["train_batch_size"] == "auto"
        json.dumps(config)
    printed = subprocess.run(
        [sys.executable, "-m", "training.parallel.launchers",
         "--nodes", "2", "--processes", "2", "--", *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert printed.count("torchrun --nnodes 2") == 2 and "rank 0" in printed


def test_zero_on_the_cpu_fsdp_on_one_process_and_fsdp_for_dpo_on_the_cpu_are_refused_before_any_job(
    home, db, tiny_model_dir, monkeypatch
):
    from core.errors import UserError

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    refused = {
        ("zero2", "sft", 2): "shards only across GPUs",
        ("zero3", "sft", 2): "shards only across GPUs",
        ("fsdp", "sft", 1): "with one process there is nothing to shard",
        ("fsdp", "dpo", 2): "for DPO choose ddp on the CPU",
    }
    for (strategy, method, processes), message in refused.items():
        config = TrainConfig(
            base=str(tiny_model_dir),
            data=str(SAMPLE),
            name="s",
            strategy=strategy,
            method=method,
            processes=processes,
            device="cpu",
        )
        with pytest.raises(UserError, match=message):
            lifecycle.submit(db, config)
    assert jobs.list_all(db) == []


@pytest.mark.slow
def test_fsdp_on_two_cpu_processes_shards_the_model_and_trains_and_scores_as_one_process(
    home, tiny_model_dir, single_process_run
):
    """Checkpoints scored on the way (every rank generates in step with rank 0), the adapter whole."""
    common = ("--base", str(tiny_model_dir), "--data", str(SAMPLE), "--packing", "off", "--max-steps", "4")
    common = (*common, "--lr", "1e-3", "--lora-dropout", "0", "--batch-size", "2", "--save-steps", "2")
    reference = single_process_run(*common, "--grad-accum", "2")
    two = _torchrun(*common, "--name", "two", "--grad-accum", "1", "--strategy", "fsdp")
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]

    db = connect()
    rows = _trained_alike(db, reference)

    job_dir = Path(jobs.get(db, rows["two"].job_id).job_dir)
    for log in (job_dir / "train.log", job_dir / "rank1.log"):
        held = re.search(r"FSDP: this process held ([\d,]+) of the model's ([\d,]+) param", log.read_text())
        assert held, log
        share = int(held.group(1).replace(",", "")) / int(held.group(2).replace(",", ""))
        assert 0.45 <= share <= 0.55, (log.name, share)
    assert "trained as FSDP" in (job_dir / "train.log").read_text()
    steps = {
        "one": [c.step for c in checkpoints.for_job(reference, rows["one"].job_id)],
        "two": [c.step for c in checkpoints.for_job(db, rows["two"].job_id)],
    }
    assert steps["one"] == steps["two"] == [2, 4]


@pytest.mark.slow
def test_jobs_share_two_simulated_gpus_and_chat_stays_off_the_held_ones(
    home, db, tiny_model_dir, monkeypatch
):
    from core.errors import UserError
    from engine import devices

    monkeypatch.setenv(devices.SIMULATED, "0,1")  # a machine with two GPUs; the training itself runs on CPU
    first = _submit(db, tiny_model_dir, "gpu-a", processes=1, max_steps=5000)
    second = _submit(db, tiny_model_dir, "gpu-b", processes=1, max_steps=5000)
    running = [
        wait_for_status(db, job.id, lambda j: j.step >= 1, what="both running") for job in (first, second)
    ]
    assert sorted(job.devices for job in running) == ["0", "1"]  # side by side, one GPU each
    assert devices.holders() == {0: running[0].id, 1: running[1].id} or devices.holders() == {
        0: running[1].id,
        1: running[0].id,
    }
    assert devices.chat_gpu() is None and devices.chat_device() == "cpu"

    both = _submit(db, tiny_model_dir, "gpu-c", processes=2, max_steps=3)
    waiting = wait_for_status(db, both.id, lambda j: j.waiting_for, what="the queue's reason")
    assert waiting.status == "queued" and "needs 2 GPU(s)" in waiting.waiting_for
    lifecycle.cancel(db, first.id)
    wait_for_status(db, first.id, lambda j: j.status == "cancelled", what="the first to stop")
    assert lifecycle.get(db, both.id).status == "queued"  # one free GPU is not two
    lifecycle.cancel(db, second.id)
    done = wait_for_status(
        db, both.id, lambda j: j.status not in jobs.ACTIVE, what="the two-GPU job", timeout=180
    )
    assert done.status == "succeeded" and done.devices == "0,1" and not done.waiting_for, done
    with pytest.raises(UserError, match="3 processes"):
        _submit(db, tiny_model_dir, "gpu-d", processes=3)


def test_jobs_take_the_gpus_no_chat_uses_first_and_chats_share_one(home, monkeypatch):
    from engine import devices

    monkeypatch.setenv(devices.SIMULATED, "0,1,2")
    app_chat = devices.mark_chat("cuda:1")  # the app's chat model is on GPU 1
    assert devices.in_chat_use(1) and not devices.in_chat_use(0)
    assert devices.chat_gpu() == 1  # the API server's model joins it there
    api_chat = devices.mark_chat(f"cuda:{devices.chat_gpu()}")
    one = devices.try_take(1, job_id=10)
    two = devices.try_take(2, job_id=11)
    assert one.gpus == [0] and two.gpus == [1, 2]  # GPU 1 only when nothing else is left
    assert devices.try_take(1, job_id=12) is None and devices.chat_gpu() is None
    two.release()
    app_chat.close()
    assert devices.in_chat_use(1)  # a shared mark: the other chat still holds it
    api_chat.close()
    assert not devices.in_chat_use(1) and devices.chat_gpu() == 1  # free, and the lowest free
    assert devices.mark_chat("cpu") is None
    one.release()


def _node_launchers(name: str, *args: str, port: int) -> list[subprocess.Popen]:
    """The training page's node commands for 2 machines x 1 process, run here as two launchers
    (node 1 first: the registry must still end up with node 0's process)."""
    launch = launchers.Launch(processes=1, nodes=2, host="127.0.0.1", port=port)
    commands = launchers.node_commands(launch, ["--name", name, *map(str, args)], name)
    started = []
    for command in reversed(commands):
        words = shlex.split(command)
        assert words[0] == "torchrun"
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", *words[1:]],
                cwd=PROJECT_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        time.sleep(1)
    return started[::-1]  # node 0, node 1


@pytest.mark.slow
def test_two_nodes_train_one_job_with_the_losses_of_one_process(home, tiny_model_dir, single_process_run):
    common = ("--base", str(tiny_model_dir), "--data", str(SAMPLE), "--packing", "on", *PARITY)
    reference = single_process_run(*common, "--grad-accum", "2")
    nodes = _node_launchers("two-nodes", *common, "--grad-accum", "1", port=free_port())
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-3000:] for o in outputs)

    db = connect()
    assert [j.adapter_name for j in jobs.list_all(db)] == ["two-nodes"]  # one job for both nodes
    rows = {"one": adapters.get(reference, "one"), "two-nodes": adapters.get(db, "two-nodes")}
    losses = {"one": _losses(reference, rows["one"]), "two-nodes": _losses(db, rows["two-nodes"])}
    assert len(losses["two-nodes"]) == 4
    for single, parallel in zip(losses["one"], losses["two-nodes"], strict=True):
        assert abs(parallel - single) <= 1e-4 * abs(single), losses
    job_dir = Path(jobs.get(db, rows["two-nodes"].job_id).job_dir)
    assert "rank 1 of 2" in (job_dir / "rank1.log").read_text()
    # rank 0 (the registry's writer) ran under node 0's launcher, rank 1 under node 1's
    assert "training 'two-nodes'" in outputs[0] and "training 'two-nodes'" not in outputs[1], outputs


@pytest.mark.slow
@pytest.mark.parametrize("killed", ["node", "launcher"])  # the whole machine, or only its torchrun
def test_killing_one_node_ends_the_job_interrupted_and_resume_continues_it(home, tiny_model_dir, killed):
    args = ("--base", str(tiny_model_dir), "--data", str(SAMPLE), "--batch-size", "1", "--grad-accum", "1")
    args += ("--max-steps", "12", "--save-steps", "4", "--skip-evaluation")
    nodes = _node_launchers("lost-node", *args, port=free_port())
    db = connect()
    job = wait_until(lambda: jobs.active_for_name(db, "lost-node"), what="the job")
    wait_for_status(db, job.id, lambda j: (j.step or 0) >= 5, what="step 5")
    for pid in _process_tree(nodes[1].pid) if killed == "node" else [nodes[1].pid]:
        os.kill(pid, signal.SIGKILL)

    ended = wait_for_status(db, job.id, lambda j: j.status not in jobs.ACTIVE, what="the end")
    assert ended.status == "interrupted", (Path(ended.job_dir) / "train.log").read_text()[-3000:]
    if killed == "launcher":  # its rank lived on: both stopped together, with a checkpoint, as for a cancel
        assert ended.error == texts.ERR_LAUNCHER_LOST
        assert (Path(ended.job_dir) / "checkpoints" / f"checkpoint-{ended.step}").is_dir()
    assert nodes[0].wait(timeout=120) != 0  # node 0's launcher ends too, with nothing left behind
    assert adapters.get(db, "lost-node") is None
    resumed = run_module("training.train", "--name", "lost-node", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert jobs.get(db, job.id).status == "succeeded" and adapters.get(db, "lost-node").metrics["steps"] == 12
    assert "resuming from" in (Path(ended.job_dir) / "train.log").read_text()


def _process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (torchrun starts its workers in sessions of their own)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, queue = [], [pid]
    while queue:
        tree.append(queue.pop())
        queue.extend(children.get(tree[-1], []))
    return tree


def test_the_trainer_imports_without_torch_and_leaving_does_not_import_it():
    """A cancel can interrupt torch's import (training.train); importing it again at exit aborts
    the process, so nothing on the way out may import it."""
    code = (
        "import sys, training.train; from training.parallel import distributed; distributed.leave();"
        "print('torch' in sys.modules)"
    )
    printed = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert printed.strip() == "False"


@pytest.mark.slow
def test_a_cancelled_fsdp_job_resumes_under_fsdp_only_from_its_sharded_checkpoint_to_the_end(
    home, db, tiny_model_dir
):
    job = _submit(db, tiny_model_dir, "sharded", strategy="fsdp", max_steps=8, save_steps=2)
    running = wait_for_status(db, job.id, lambda j: j.step >= 3, what="step 3")
    job_dir = Path(running.job_dir)
    assert lifecycle.cancel(db, job.id)
    ended = wait_for_status(db, job.id, lambda j: j.status not in jobs.ACTIVE, what="end")
    assert ended.status == "cancelled", ended
    saved = max(int(path.name.split("-")[1]) for path in (job_dir / "checkpoints").glob("checkpoint-*"))
    assert 3 <= saved < 8

    switched = run_module("training.train", "--name", "sharded", "--resume", "--strategy", "ddp")
    assert switched.returncode == 2 and "Resume it with --strategy fsdp" in switched.stderr, switched.stderr
    assert jobs.get(db, job.id).status == "cancelled"  # a refused resume leaves the job as it was
    resumed = run_module("training.train", "--name", "sharded", "--resume", "--processes", "2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert jobs.get(db, job.id).status == "succeeded"
    log = (job_dir / "train.log").read_text()
    assert f"resuming from {job_dir / 'checkpoints' / f'checkpoint-{saved}'}" in log
    assert "trained as FSDP" in log
    adapter = adapters.get(db, "sharded")
    assert adapter.metrics["steps"] == 8
    steps = [m["step"] for m in jobs.metrics_for(db, job.id)]
    assert steps == sorted(set(steps)) and steps[-1] == 8  # the steps after the checkpoint, once each
