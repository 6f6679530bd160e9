"""Refresh the README's screenshots from the real product: a scratch home, the one-click demo trained
through the product's own lifecycle, one custom role, then each page in headless Chromium.

    apt-get install fonts-noto-cjk fonts-noto-color-emoji   # glyphs for headless Chromium (root, once)
    .venv/bin/python docs/screenshots.py

Takes about three minutes on 2 CPU cores (the demo trains for about two of them).
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
DOCS = PROJECT_ROOT / "docs"
VIEWPORT = {"width": 1400, "height": 900}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def prepare(home: Path) -> dict:
    """The demo adapter (trained, evaluated on its held-out split) and a custom role."""
    from engine.roles import Decoding, Role
    from registry import connect
    from studio.roles import save_custom_role
    from training import lifecycle

    db = connect()
    job = lifecycle.start_demo(db)
    print(f"training the demo (job {job['id']}) ...", flush=True)
    done = wait_for(
        lambda: (
            (row := lifecycle.get(connect(), job["id"]))["status"] not in ("queued", "running", "evaluating")
            and row
        ),
        600,
        "the demo job",
    )
    if done["status"] != "succeeded":
        raise SystemExit(f"the demo job ended {done['status']}: {done['error']}")
    save_custom_role(
        db,
        Role(
            name="pediatrician",
            title="儿科医生",
            system_prompt="你是一名耐心的儿科医生，用家长听得懂的话回答问题。",
            decoding=Decoding(do_sample=True, temperature=0.6, top_p=0.9, repetition_penalty=1.1),
        ),
    )
    return done


def main() -> int:
    from playwright.sync_api import sync_playwright

    from engine.models import models_dir

    os.environ.setdefault("TRANSLATOR_MODELS_DIR", str(models_dir()))  # no second conversion
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["TRANSLATOR_HOME"] = scratch
        os.environ["TRANSLATOR_LANG"] = "zh"
        job = prepare(Path(scratch))
        port = free_port()
        log = open(Path(scratch) / "streamlit.log", "wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "翻译机器人.py", "--server.port", str(port)]
            + ["--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _healthy(url), 90, "the server")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
                page = browser.new_context(viewport=VIEWPORT).new_page()
                shoot_all(page, url, job)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


def shoot_all(page, url: str, job: dict) -> None:
    from core import texts

    def idle():
        time.sleep(0.5)
        page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=180_000)

    page.goto(f"{url}/?adapter={job['adapter_name']}")
    idle()
    with texts.in_language("zh"):
        page.get_by_test_id("stChatInputTextArea").fill("The patient was admitted with a high fever.")
        page.keyboard.press("Enter")
        wait_for(lambda: page.get_by_test_id("stChatMessage").count() >= 2, 120, "the reply")
        idle()
        page.screenshot(path=DOCS / "chat.png")

        page.set_viewport_size({"width": VIEWPORT["width"], "height": 2300})  # the page scrolls inside
        page.goto(f"{url}/train?job={job['id']}")
        idle()
        page.screenshot(path=DOCS / "train.png")

        page.goto(f"{url}/adapters")
        idle()
        page.get_by_text(f"{job['adapter_name']} · translator", exact=False).first.click()
        idle()
        page.screenshot(path=DOCS / "adapters.png")

        page.goto(f"{url}/roles")
        idle()
        page.get_by_test_id("stSelectbox").first.click()
        page.get_by_role("option", name="pediatrician").click()
        idle()
        page.screenshot(path=DOCS / "roles.png")

    page.set_viewport_size(VIEWPORT)
    page.get_by_test_id("stSidebar").get_by_text("English", exact=True).click()
    idle()
    page.goto(f"{url}/")
    idle()
    page.screenshot(path=DOCS / "chat-en.png")
    page.get_by_test_id("stSidebar").get_by_text("中文", exact=True).click()  # leave the studio in Chinese
    idle()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _chromium() -> str:
    import shutil

    found = (
        os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-headless-shell")
    )
    if not found:
        raise SystemExit("no Chromium: install Debian's chromium (./setup.sh --dev does it as root)")
    return found


if __name__ == "__main__":
    sys.exit(main())
