"""The Streamlit server's own CPU while a training job runs, with its file watcher on and off.

    .venv/bin/python bench/server_cpu.py            # ~3 minutes on 2 CPU cores
    .venv/bin/python bench/server_cpu.py --seconds 60

One browser session sits on the chat page (a watcher is created per session) while a trainer writes
checkpoints every 2 steps into a home inside the project folder, as the default ./workspace is.
The same job runs once with `--server.fileWatcherType auto` (Streamlit's default, before this
project set "none" in .streamlit/config.toml) and once with `none`; the server's user+system CPU
time over the same window is printed for each, with the ratio last.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.home import PROJECT_ROOT  # noqa: E402
from tests.e2e.conftest import CHROMIUM_ARGS, StreamlitServer, chromium_path  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(watcher: str, seconds: float, browser) -> tuple[float, int]:
    home = PROJECT_ROOT / f"workspace-bench-{watcher}"
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "TRANSLATOR_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    server_log = Path(f"/tmp/server_cpu_{watcher}.log")
    server_log.unlink(missing_ok=True)
    # the project's config says "none"; the flag overrides it for the "auto" run
    server = StreamlitServer(home, env, server_log, watcher=watcher).start()
    trainer = None
    try:
        page = browser.new_context().new_page()
        page.goto(server.url)
        page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=180_000)
        trainer = subprocess.Popen(
            [
                sys.executable, "-m", "training.train", "--base", "builtin",
                "--data", str(PROJECT_ROOT / "data" / "translator_sample.jsonl"), "--name", "bench",
                "--max-steps", "200", "--save-steps", "2", "--batch-size", "1", "--grad-accum", "1",
                "--skip-evaluation",
            ],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(10)  # the trainer loads and starts writing checkpoints
        start = cpu_seconds(server.process.pid)
        time.sleep(seconds)
        used = cpu_seconds(server.process.pid) - start
        overflow = server_log.read_text(errors="replace").count("Inotify queue overflowed")
        page.context.close()
        return used / seconds, overflow
    finally:
        if trainer is not None:
            trainer.kill()
            trainer.wait()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        results = {watcher: measure(watcher, args.seconds, browser) for watcher in ("auto", "none")}
        browser.close()
    for watcher, (share, overflow) in results.items():
        print(
            f"fileWatcherType={watcher}: server CPU {share * 100:.1f}% of a core; "
            f"'Inotify queue overflowed' x{overflow}"
        )
    auto, none = results["auto"][0], results["none"][0]
    print(f"server CPU during a job, watcher on / off: {auto / max(none, 1e-9):.1f}x")


if __name__ == "__main__":
    main()
