"""Refresh the README's screenshots from the real product: a scratch home, the one-click demo trained
through the product's own lifecycle, one custom role, a few blind votes, then each page in headless
Chromium.

    .venv/bin/python docs/screenshots.py

Headless Chromium draws Chinese only with a CJK font: when fontconfig knows none, the script installs
Debian's (apt-get, as root) or says which to install. The blind votes are real rounds (the demo
adapter against its base on the translator sample, both answering), judged by the script: the
answer with the higher chrF against the reference wins. Takes about four minutes on 2 CPU cores
(the demo trains for about two of them).
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


FONTS = ("fonts-noto-cjk", "fonts-noto-color-emoji")


def ensure_fonts() -> None:
    """A CJK font for Chromium, installed from Debian when this process may (root with apt-get)."""
    import shutil

    def known() -> bool:
        listed = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True)
        return bool(listed.stdout.strip())

    if shutil.which("fc-list") and known():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"no CJK font: install {' '.join(FONTS)} (Debian) and run again")
    print(f"installing {', '.join(FONTS)} ...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", *FONTS], check=True, stdout=subprocess.DEVNULL)
    if not known():
        raise SystemExit("the CJK fonts were installed but fontconfig does not list them")


def cast_votes(adapter_name: str, rounds: int = 6) -> None:
    """Blind rounds of the adapter against its base on the sample's sentences, judged by chrF."""
    import json
    import random

    from sacrebleu.metrics import CHRF

    from engine.generation import ChatEngine
    from registry import adapters, connect
    from studio import blind
    from studio.roles import get_role

    db = connect()
    adapter = adapters.get(db, adapter_name)
    role = get_role(db, adapter.role)
    engine = ChatEngine(adapter.base_model)
    chrf, rng = CHRF(), random.Random(0)
    lines = (PROJECT_ROOT / "data" / "translator_sample.jsonl").read_text(encoding="utf-8").splitlines()
    for record in map(json.loads, lines[-rounds:]):
        answers = {
            adapter_name: engine.reply(record["input"], role=role, adapter=adapter),
            "": engine.reply(record["input"], role=role),
        }
        score = {name: chrf.sentence_score(text, [record["output"]]).score for name, text in answers.items()}
        shown = blind.draw_order(adapter_name, "", rng)
        side = {name: "ab"[i] for i, name in enumerate(shown)}
        choice = "tie" if score[adapter_name] == score[""] else side[max(score, key=score.get)]
        context = blind.context(role, adapter.prompt_format)
        round_ = blind.Round(
            prompt=record["input"],
            base_model=adapter.base_model,
            shown=shown,
            answers=(answers[shown[0]], answers[shown[1]]),
            contexts=(context, context),
        )
        blind.record(db, round_, choice)


def prepare(home: Path):
    """The demo adapter (trained, evaluated on its held-out split) and a custom role."""
    from engine.roles import Decoding, Role
    from registry import connect
    from studio.roles import save_custom_role
    from training.jobs import lifecycle

    db = connect()
    job = lifecycle.start_demo(db)
    print(f"training the demo (job {job.id}) ...", flush=True)
    done = wait_for(
        lambda: (
            (row := lifecycle.get(connect(), job.id)).status not in ("queued", "running", "evaluating")
            and row
        ),
        600,
        "the demo job",
    )
    if done.status != "succeeded":
        raise SystemExit(f"the demo job ended {done.status}: {done.error}")
    save_custom_role(
        db,
        Role(
            name="pediatrician",
            title="儿科医生",
            system_prompt="你是一名耐心的儿科医生，用家长听得懂的话回答问题。",
            decoding=Decoding(do_sample=True, temperature=0.6, top_p=0.9, repetition_penalty=1.1),
        ),
    )
    cast_votes(done.adapter_name)
    return done


def start_app(log_path: Path, env: dict | None = None, script_args=()) -> tuple[subprocess.Popen, str]:
    """`streamlit run 翻译机器人.py` on a free port, its output in `log_path`; (process, url)."""
    port = free_port()
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "翻译机器人.py", "--server.port", str(port)]
            + ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
            + (["--", *script_args] if script_args else []),
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return server, f"http://127.0.0.1:{port}"


def main() -> int:
    from playwright.sync_api import sync_playwright

    from engine.models import models_dir

    ensure_fonts()
    os.environ.setdefault("TRANSLATOR_MODELS_DIR", str(models_dir()))  # no second conversion
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["TRANSLATOR_HOME"] = scratch
        os.environ["TRANSLATOR_LANG"] = "zh"
        job = prepare(Path(scratch))
        server, url = start_app(Path(scratch) / "streamlit.log")
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


def shoot_all(page, url: str, job) -> None:
    from core import texts

    def idle():
        time.sleep(0.5)
        page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=180_000)

    page.goto(f"{url}/?adapter={job.adapter_name}")
    idle()
    with texts.in_language("zh"):
        page.get_by_test_id("stChatInputTextArea").fill("The patient was admitted with a high fever.")
        page.keyboard.press("Enter")
        wait_for(lambda: page.get_by_test_id("stChatMessage").count() >= 2, 120, "the reply")
        idle()
        page.screenshot(path=DOCS / "chat.png")

        page.set_viewport_size({"width": VIEWPORT["width"], "height": 2300})  # the page scrolls inside
        page.goto(f"{url}/train?job={job.id}")
        idle()
        page.get_by_text(texts.DEVICES, exact=True).click()
        page.get_by_text(texts.TRACKING, exact=True).click()
        idle()
        page.screenshot(path=DOCS / "train.png")

        page.set_viewport_size({"width": VIEWPORT["width"], "height": 3400})
        page.goto(f"{url}/adapters")
        idle()
        page.get_by_text(f"{job.adapter_name} · translator", exact=False).first.click()
        idle()
        page.screenshot(path=DOCS / "adapters.png")
        page.set_viewport_size(VIEWPORT)
        page.get_by_text(texts.VOTES_TITLE, exact=True).scroll_into_view_if_needed()
        idle()
        page.screenshot(path=DOCS / "votes.png")

        page.set_viewport_size({"width": VIEWPORT["width"], "height": 2300})
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
