"""The training page sends a job to a real one-machine Slurm cluster (tests/slurm_cluster.py): the
panel shows Slurm's pending and running states beside the loss, the adapter chats when it is done,
and Stop on a second job ends it cancelled with a checkpoint."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from core import texts
from registry import connect, conversations
from registry import jobs as job_rows
from tests.e2e.conftest import (
    StreamlitServer,
    app_env,
    assert_no_traceback,
    open_page,
    stop_trainers,
    wait_idle,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("slurm-page-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSLATOR_HOME", str(home))
        patch.setenv("TRANSLATOR_LANG", "en")
        yield home


@pytest.fixture(scope="module")
def cluster_server(slurm_cluster, cluster_home, tiny_model_dir):
    env = app_env(cluster_home, tiny_model_dir, TRANSLATOR_LANG="en")  # SLURM_CONF: the test cluster
    running = StreamlitServer(cluster_home, env, cluster_home / "streamlit.log").start()
    yield running
    running.stop()
    stop_trainers(cluster_home)
    assert_no_traceback(running)


def _poll(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _start_on_the_cluster(page, name: str, max_steps: int) -> None:
    page.get_by_text(texts.WHERE_CHOICES["slurm"], exact=True).click()
    wait_idle(page)
    page.get_by_text(texts.HYPERPARAMETERS).click()
    labels = texts.SETTING_LABELS
    for label, value in (
        (labels["max_steps"], max_steps),
        (labels["batch_size"], 1),
        (texts.ADAPTER_NAME, name),
    ):
        field = page.get_by_label(label)
        field.fill(str(value))
        field.press("Tab")
        wait_idle(page)
    page.get_by_role("button", name=texts.START).click()


def test_a_job_sent_to_slurm_from_the_page_runs_there_chats_and_a_second_one_stops(
    browser, cluster_server, slurm_cluster
):
    db = connect()
    # the node's CPUs are taken for a moment, so the job is seen pending before it runs
    blocker = subprocess.run(
        ["sbatch", "--parsable", f"--cpus-per-task={os.cpu_count()}", "--wrap", "sleep 20"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    page = open_page(browser, f"{cluster_server.url}/train")
    _start_on_the_cluster(page, "from-the-page", max_steps=12)
    job = _poll(
        lambda: (row := job_rows.active_for_name(db, "from-the-page")) and row.slurm_job_id and row,
        60,
        "the job row with its Slurm id",
    )
    _poll(
        lambda: page.get_by_text(f"Slurm job {job.slurm_job_id}: pending").count(), 60, "pending on the panel"
    )
    subprocess.run(["scancel", blocker], check=True)
    running = f"Slurm job {job.slurm_job_id}: running on {slurm_cluster.host}"
    _poll(lambda: page.get_by_text(running).count(), 120, "running on the node, on the panel")
    loss = page.get_by_test_id("stMetric").filter(has_text=texts.METRIC_LOSS)
    _poll(lambda: "–" not in loss.inner_text(), 120, "a loss on the panel")
    _poll(lambda: page.get_by_text(f"from-the-page · {texts.STATUS['succeeded']}").count(), 240, "succeeded")
    page.get_by_role("link", name=texts.GO_CHAT).click()
    wait_idle(page)
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("The patient has a fever.")
    box.press("Enter")

    def reply():
        for talk in conversations.list_all(db):
            for message in conversations.messages(db, talk["id"]):
                if message["role"] == "assistant" and message["adapter"] == "from-the-page":
                    return message
        return None

    _poll(reply, 120, "the cluster-trained adapter's reply")

    page = open_page(browser, f"{cluster_server.url}/train")
    _start_on_the_cluster(page, "stopped-on-the-cluster", max_steps=400)
    second = _poll(lambda: job_rows.active_for_name(db, "stopped-on-the-cluster"), 60, "the second job row")
    _poll(lambda: (job_rows.get(db, second.id).step or 0) >= 5, 180, "the second job training")
    page.get_by_role("button", name=texts.CANCEL).click()
    _poll(
        lambda: page.get_by_text(f"stopped-on-the-cluster · {texts.STATUS['cancelled']}").count(),
        120,
        "cancelled",
    )
    ended = job_rows.get(db, second.id)
    assert ended.status == "cancelled" and ended.stop_requested_at
    assert list((Path(ended.job_dir) / "checkpoints").glob("checkpoint-*"))
