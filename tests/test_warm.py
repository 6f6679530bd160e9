"""Warm starts (studio/warm.py): workers forked from a resident process with the libraries imported.

A resident of these tests lives in a private folder of the test's (XDG_RUNTIME_DIR), apart from the
one the rest of the suite's jobs fork from."""

import json
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

from core.home import PROJECT_ROOT
from studio import supervisor, warm
from tests.conftest import job_row, wait_until


@pytest.fixture(scope="module")
def resident(request):
    """A resident in a folder of its own; ended after the module's tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_RUNTIME_DIR", short_folder(request))
        socket_path = start_resident()
        yield socket_path
        pid = warm.resident_pid(socket_path)
        if pid:
            os.kill(pid, signal.SIGTERM)


def short_folder(request) -> str:
    """A folder for sockets (107 bytes of path at most), removed after the test or module."""
    folder = tempfile.mkdtemp(prefix="warm-", dir="/tmp")
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    return folder


def start_resident() -> Path:
    env = dict(os.environ)
    socket_path = warm.resident_socket(env, PROJECT_ROOT)
    assert warm.start("tests.warm_probe", ["unused"], Path(os.devnull), env, PROJECT_ROOT) is None
    wait_until(lambda: answers(socket_path), what="the resident's socket", timeout=120)
    return socket_path


def answers(socket_path: Path) -> bool:
    connection = warm._connect(socket_path)
    if connection is not None:
        connection.close()
    return connection is not None


def start_probe(tmp_path, *arguments, env=None) -> tuple[int, Path]:
    out = tmp_path / "facts.json"
    env = {**os.environ, **(env or {})}
    pid = warm.start("tests.warm_probe", [str(out), *arguments], tmp_path / "probe.log", env, PROJECT_ROOT)
    assert pid is not None, "the resident did not answer"
    return pid, out


def read_when_written(path: Path) -> dict:
    wait_until(path.exists, what=f"{path.name}", timeout=30)
    return json.loads(path.read_text())


@pytest.mark.slow
def test_a_warm_worker_has_the_libraries_imported_and_runs_the_project_code_afresh_in_a_session_of_its_own(
    resident, tmp_path
):
    pid, out = start_probe(tmp_path, "two words", env={"TRANSLATOR_WARM_PROBE": "from the request"})
    facts = read_when_written(out)
    assert facts["torch_was_imported"] is True  # forked after the resident's imports
    assert facts["warm_module_fresh"] is True  # the project's modules are read again in the child
    assert facts["pid"] == pid and facts["session"] == pid
    assert facts["argv"] == [str(out), "two words"]
    assert facts["probe_variable"] == "from the request" and facts["cwd"] == str(PROJECT_ROOT)
    assert facts["stdin"] == "/dev/null"
    wait_until(lambda: not supervisor.process_alive(pid), what="the probe's exit")  # reaped: no zombie
    assert f"probe writes {out}" in (tmp_path / "probe.log").read_text()


@pytest.mark.slow
def test_a_stop_sent_before_the_worker_installs_its_handler_reaches_that_handler(resident, tmp_path):
    pid, out = start_probe(tmp_path, "late-handler")
    os.kill(pid, signal.SIGTERM)  # at once: the probe installs its handler half a second later
    assert read_when_written(out) == {"stopped": True}


@pytest.mark.slow
def test_no_worker_runs_when_its_requester_is_gone_before_saying_go(resident, tmp_path):
    out = tmp_path / "facts.json"
    log = open(tmp_path / "probe.log", "ab")
    request = {"module": "tests.warm_probe", "arguments": [str(out)], "cwd": str(PROJECT_ROOT)}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection, log:
        connection.connect(str(resident))
        message = json.dumps({**request, "env": dict(os.environ)}).encode() + b"\n"
        socket.send_fds(connection, [message], [log.fileno()])
        pid = json.loads(warm._read_line(connection))["pid"]
    wait_until(lambda: not supervisor.process_alive(pid), what="the unclaimed child's exit")
    time.sleep(0.5)
    assert not out.exists()


@pytest.mark.slow
def test_a_killed_resident_is_replaced_and_the_start_in_between_is_cold(resident, tmp_path):
    old = warm.resident_pid(resident)
    os.kill(old, signal.SIGKILL)
    # its threads end after it: its lock (and its socket) go with the last of them
    wait_until(lambda: warm.resident_pid(resident) is None, what="the resident's end")
    assert resident.exists()  # left behind by the kill
    env = dict(os.environ)
    assert warm.start("tests.warm_probe", [str(tmp_path / "x")], tmp_path / "log", env, PROJECT_ROOT) is None
    wait_until(lambda: answers(resident), what="a new resident", timeout=120)
    assert warm.resident_pid(resident) not in (None, old)
    pid, out = start_probe(tmp_path)
    assert read_when_written(out)["torch_was_imported"] is True


@pytest.mark.slow
def test_a_resident_ends_by_itself_after_its_idle_time(request, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", short_folder(request))
    monkeypatch.setenv(warm.IDLE_VARIABLE, "1")
    socket_path = start_resident()
    pid = warm.resident_pid(socket_path)
    wait_until(lambda: not supervisor.process_alive(pid), what="the idle resident's end", timeout=30)
    assert not socket_path.exists()
    assert warm.resident_pid(socket_path) is None


def test_what_libraries_may_read_picks_the_resident_and_the_projects_own_variables_do_not():
    env = {"PATH": "/usr/bin", "TRANSLATOR_HOME": "/a", "PYTEST_CURRENT_TEST": "one"}
    same = {**env, "TRANSLATOR_HOME": "/b", "TRANSLATOR_LANG": "en", "PYTEST_CURRENT_TEST": "two"}
    assert warm.fingerprint(env, PROJECT_ROOT) == warm.fingerprint(same, PROJECT_ROOT)
    alone = warm.fingerprint(env, PROJECT_ROOT)
    for library_variable in ({"OMP_NUM_THREADS": "1"}, {"HF_HOME": "/x"}, {"CUDA_VISIBLE_DEVICES": "0"}):
        assert warm.fingerprint({**env, **library_variable}, PROJECT_ROOT) != alone
    assert warm.fingerprint(env, PROJECT_ROOT) != warm.fingerprint(env, PROJECT_ROOT / "elsewhere")


def test_the_sockets_folder_must_be_this_users_alone_and_short_enough_for_a_socket(request, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/" + "long" * 20)
    assert warm.runtime_dir().parent == Path("/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", short_folder(request))
    folder = warm.runtime_dir()
    assert folder.stat().st_mode & 0o777 == 0o700
    folder.chmod(0o755)
    with pytest.raises(PermissionError, match="only it may open"):
        warm.runtime_dir()


@pytest.mark.slow
def test_switched_off_nothing_is_forked(request, tmp_path, monkeypatch):
    folder = Path(short_folder(request))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    env = {**os.environ, warm.ENABLED_VARIABLE: "0"}
    assert warm.start("tests.warm_probe", ["x"], tmp_path / "log", env, PROJECT_ROOT) is None
    assert not list(folder.iterdir())  # not even a resident started
    env[warm.ENABLED_VARIABLE] = "1"
    assert warm.start("tests.warm_probe", ["x"], tmp_path / "log", env, PROJECT_ROOT) is None
    socket_path = warm.resident_socket(env, PROJECT_ROOT)
    os.kill(wait_until(lambda: warm.resident_pid(socket_path), what="the resident it starts"), signal.SIGTERM)


def test_a_job_that_quantises_its_base_starts_cold_as_the_resident_has_no_bitsandbytes():
    training = supervisor.KINDS["train"]
    assert training.warm(job_row(config={"quantize": "none"}))
    assert not training.warm(job_row(config={"quantize": "4bit"}))
    assert all(kind.warm(job_row()) for name, kind in supervisor.KINDS.items() if name != "train")
