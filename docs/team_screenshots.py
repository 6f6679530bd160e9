"""Refresh the README's team-mode screenshots: the sign-in page and the owner's Team page (accounts,
keys, audit trail), from a real `streamlit run 翻译机器人.py -- --team` in a scratch home.

    .venv/bin/python docs/team_screenshots.py

The owner sets a password with the setup code the server prints, creates two members through the
page, and one member's wrong passwords leave their marks in the audit trail. About a minute.
"""

import os
import re
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
from docs.screenshots import VIEWPORT, _chromium, _healthy, ensure_fonts, start_app, wait_for  # noqa: E402

DOCS = PROJECT_ROOT / "docs"
PASSWORD = "correct horse battery"


def main() -> int:
    from playwright.sync_api import sync_playwright

    from engine.models import models_dir

    ensure_fonts()
    os.environ.setdefault("TRANSLATOR_MODELS_DIR", str(models_dir()))
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "TRANSLATOR_HOME": scratch, "TRANSLATOR_LANG": "zh", "PYTHONUNBUFFERED": "1"}
        log_path = Path(scratch) / "streamlit.log"
        server, url = start_app(log_path, env, script_args=["--team"])
        try:
            wait_for(lambda: _healthy(url), 90, "the server")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
                shoot(browser, url, log_path)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


def shoot(browser, url: str, log_path: Path) -> None:
    from core import texts

    texts.use("zh")

    def idle(page):
        page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=120_000)
        page.wait_for_timeout(500)

    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(url)
    page.get_by_text(texts.LOGIN_TITLE).wait_for(timeout=120_000)
    idle(page)
    page.screenshot(path=str(DOCS / "team-login.png"))
    code = wait_for(
        lambda: re.search(r"[A-Z2-9]{4}(?:-[A-Z2-9]{4}){3}", log_path.read_text(errors="replace")),
        30,
        "the code",
    ).group(0)
    page.get_by_text(texts.LOGIN_WITH_CODE).click()
    page.get_by_label(texts.LOGIN_REPEAT_PASSWORD).wait_for()
    page.get_by_label(texts.LOGIN_NAME, exact=True).fill("owner")
    page.get_by_label(texts.LOGIN_CODE, exact=True).fill(code)
    page.get_by_label(texts.LOGIN_NEW_PASSWORD, exact=True).fill(PASSWORD)
    page.get_by_label(texts.LOGIN_REPEAT_PASSWORD).fill(PASSWORD)
    page.get_by_role("button", name=texts.LOGIN_SET_PASSWORD).click()
    page.get_by_text("owner（").first.wait_for(timeout=60_000)
    guesser = browser.new_context(viewport=VIEWPORT).new_page()
    guesser.goto(url)
    idle(guesser)
    for _ in range(2):
        guesser.get_by_label(texts.LOGIN_NAME, exact=True).fill("li-wei")
        guesser.get_by_label(texts.LOGIN_PASSWORD, exact=True).fill("guess")
        guesser.get_by_role("button", name=texts.LOGIN_SUBMIT, exact=True).click()
        idle(guesser)
    page.goto(f"{url}/team")
    idle(page)
    for name in ("li-wei", "zhang-min"):
        page.get_by_label(texts.LOGIN_NAME, exact=True).fill(name)
        page.get_by_role("button", name=texts.TEAM_ACCOUNT_CREATE).click()
        page.get_by_text(texts.TEAM_ACCOUNT_CREATED.format(name=name, hours=24)[:8]).first.wait_for()
        idle(page)
    page.get_by_role("button", name=texts.TEAM_KEY_CREATE).click()
    idle(page)
    page.screenshot(path=str(DOCS / "team-accounts.png"), full_page=True)
    print("wrote docs/team-login.png and docs/team-accounts.png")


if __name__ == "__main__":
    sys.exit(main())
