"""A real `streamlit run` server and Debian's headless Chromium driven by Playwright."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from studio import supervisor
from tests.conftest import PROJECT_ROOT

CHROMIUM_CANDIDATES = ("chromium", "chromium-headless-shell", "chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        return configured
    return next((path for name in CHROMIUM_CANDIDATES if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium: install Debian's `chromium` (./setup.sh --dev does it as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class StreamlitServer:
    def __init__(
        self, home: Path, env: dict, log_path: Path, watcher: str = "none", script_args=(), secrets=None
    ):
        self.home = home
        self.script_args = list(script_args)  # after `--`: the entry script's own (`--team`)
        self.secrets = secrets  # a secrets.toml of its own (an identity provider's [auth])
        self.watcher = watcher
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._env = env
        self.process = None

    def start(self) -> "StreamlitServer":
        command = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "翻译机器人.py",
            "--server.port",
            str(self.port),
            "--server.headless",
            "true",
            "--server.fileWatcherType",
            self.watcher,
            "--browser.gatherUsageStats",
            "false",
            *(["--secrets.files", str(self.secrets)] if self.secrets else []),
            *(["--", *self.script_args] if self.script_args else []),
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("streamlit did not become healthy in 90 s")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(scope="module")
def app_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("app-home")


def app_env(home: Path, tiny_model_dir: Path, **more: str) -> dict:
    """A test server's environment: its home, the tiny model as the default base (replies come
    fast), the product's reconciler tick, and `more`."""
    return {
        **os.environ,
        "TRANSLATOR_HOME": str(home),
        "TRANSLATOR_BASE_MODEL": str(tiny_model_dir),
        "PYTHONUNBUFFERED": "1",
        "TRANSLATOR_RECONCILE_SECONDS": str(supervisor.TICK_SECONDS),
        **more,
    }


@pytest.fixture(scope="module")
def server(app_home, tiny_model_dir, request):
    """The app on a free loopback port, defaulting to the tiny model so replies come fast."""
    env = app_env(app_home, tiny_model_dir)
    running = StreamlitServer(app_home, env, app_home / "streamlit.log").start()
    yield running
    running.stop()
    stop_trainers(app_home)
    assert_no_traceback(running)


def assert_no_traceback(server: StreamlitServer) -> None:
    """Every browser test ends here: an exception the pages caught nowhere shows in the server's log."""
    log = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
    at = log.find("Traceback")
    assert at < 0, f"the server logged a traceback:\n{log[max(at - 500, 0) : at + 4000]}"


def stop_trainers(app_home: Path) -> None:
    """Trainers are detached on purpose (they outlive the page); a test server's must not outlive the test."""
    import signal

    from registry import connect
    from studio.supervisor import process_alive

    db = connect(app_home / "registry.db")
    for job in db["jobs"].rows_where("status in ('queued', 'running', 'evaluating')"):
        if job.pid and process_alive(job.pid, job.pid_started):
            os.kill(job.pid, signal.SIGKILL)


def open_page(browser, url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    wait_idle(page)
    return page


IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def wait_idle(page, timeout: float = 120_000) -> None:
    """Until the page's script has finished running. A run that calls st.rerun() ends with the
    server saying "not running" and the next run's start arrives a moment later (Streamlit's
    AppSession sends the two separately), so an idle state counts only once it holds a moment on."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        page.wait_for_selector(IDLE, timeout=max(1.0, deadline - time.monotonic()) * 1000)
        page.wait_for_timeout(200)
        if page.locator(IDLE).count() or time.monotonic() > deadline:
            return


def poll(condition, timeout: float, what: str, interval: float = 0.25):
    """condition()'s first true value, asked every `interval` seconds; the test fails after `timeout`
    naming `what` (a text, or a function that says what the page showed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}")
