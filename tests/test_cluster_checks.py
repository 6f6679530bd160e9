"""The parts of the Slurm support that need no cluster: reading Slurm's words, the time-limit forms,
the shared-home rule and the batch script a job gets."""

import socket

import pytest

from core import home as core_home
from core.errors import UserError
from registry import jobs as job_rows
from studio import slurm
from training.config import TrainConfig
from training.jobs import cluster


@pytest.fixture(autouse=True)
def english(monkeypatch):
    monkeypatch.setenv("TRANSLATOR_LANG", "en")


def test_gpus_and_times_are_read_as_slurm_writes_them():
    assert [slurm.gpus_in(g) for g in ("gpu:4", "gpu:a100:2(S:0-1)", "gpu:2,shard:8", "(null)", "")] == [
        4,
        2,
        2,
        0,
        0,
    ]
    assert slurm._minutes("1-02:03:04") == pytest.approx(26 * 60 + 3 + 4 / 60)
    assert slurm._minutes("05:00") == 5 and slurm._minutes("UNLIMITED") is None


@pytest.mark.parametrize("given", ["90", "2:00:00", "1-12", "1-12:30", "1-12:30:00", "30:00", ""])
def test_each_time_limit_form_slurm_takes_is_taken(given):
    assert cluster.re.fullmatch(cluster.TIME_LIMIT, given)


@pytest.mark.parametrize("given", ["1:2:3:4", "2h", "-5", "1-", "soon"])
def test_other_time_limits_are_refused_in_words_before_slurm_is_asked(given, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # refused before Slurm would be looked for
    with pytest.raises(UserError, match=f"'{given}' is not a Slurm time limit: write minutes"):
        cluster.check(TrainConfig(cluster="slurm", time_limit=given))


def test_a_home_the_nodes_cannot_see_is_refused_unless_the_person_says_they_do(home, monkeypatch):
    far = slurm.Partition(name="far", nodes=2, gpus_per_node=0, cpus_per_node=8, hosts=("node8", "node9"))
    monkeypatch.delenv(cluster.SHARED_HOME, raising=False)
    kind = cluster.filesystem_type(core_home.home())
    assert kind and kind not in cluster.NETWORK_FILESYSTEMS  # this machine's disk
    with pytest.raises(UserError, match=f"is on a local filesystem \\({kind}\\) that partition far's nodes"):
        cluster.check_shared_home(far)
    here = slurm.Partition(
        name="here", nodes=1, gpus_per_node=0, cpus_per_node=2, hosts=(socket.gethostname(),)
    )
    cluster.check_shared_home(here)  # this machine is one of the nodes
    monkeypatch.setenv(cluster.SHARED_HOME, "1")
    cluster.check_shared_home(far)


def test_the_batch_script_runs_the_queued_job_under_srun_with_the_limits_asked(home):
    config = TrainConfig(
        cluster="slurm", name="med", partition="gpu", gpus_per_node=2, processes=2, time_limit="4:00:00",
        slurm_account="lab", requeue=True,
    )  # fmt: skip
    job = job_rows.Job(
        **{**dict.fromkeys(job_rows.Job.__dataclass_fields__), "id": 7, "config": {}, "remedy": {}}
    )
    text = cluster.script(job, config, home / "jobs" / "7")
    for line in (
        "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --time=4:00:00",
        "#SBATCH --account=lab", "#SBATCH --requeue", f"#SBATCH --signal=TERM@{cluster.SECONDS_TO_SAVE}",
        f"#SBATCH --output={home / 'jobs' / '7' / 'train.log'}", "export TRANSLATOR_DEVICES_HELD=1",
    ):  # fmt: skip
        assert line in text, line
    assert "--nproc-per-node 2" in text and "-m training.train --job-id 7" in text
    single = cluster.script(job, TrainConfig(cluster="slurm", name="med"), home / "jobs" / "7")
    assert "#SBATCH --no-requeue" in single and "--partition" not in single
    assert "srun --kill-on-bad-exit=1" in single and "training.train --job-id 7" in single
