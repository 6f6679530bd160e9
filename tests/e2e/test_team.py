"""Team mode in a real browser: one `streamlit run 翻译机器人.py -- --team` server, the owner and two
members in their own browser contexts (their own cookies), each seeing only their own work."""

import importlib.util
import re
import secrets as secrets_module
import subprocess
import sys
import time
import urllib.request

import pytest

from registry import accounts as account_rows
from registry import connect, conversations, jobs
from tests.conftest import make_adapter, register_adapter
from tests.e2e.conftest import (
    StreamlitServer,
    app_env,
    assert_no_traceback,
    free_port,
    stop_trainers,
    wait_idle,
)

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def team_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("team-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSLATOR_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def identity_provider(team_home):
    """The lab's identity provider: oidc-provider-mock (authlib's OpenID Connect server) in its own
    process. Its sign-in form takes a subject, which becomes the email it vouches for."""
    if importlib.util.find_spec("oidc_provider_mock") is None:
        pytest.skip("no oidc-provider-mock: it is in requirements-dev.txt")
    port = free_port()
    with open(team_home / "provider.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "oidc_provider_mock", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    issuer = f"http://127.0.0.1:{port}"
    _until(lambda: _answers(f"{issuer}/.well-known/openid-configuration"), "the identity provider")
    yield issuer
    process.terminate()
    process.wait(timeout=20)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def team_server(team_home, tiny_model_dir, identity_provider):
    env = app_env(team_home, tiny_model_dir, TRANSLATOR_LANG="en")
    secrets = team_home / "secrets.toml"
    running = StreamlitServer(
        team_home, env, team_home / "streamlit.log", script_args=["--team"], secrets=secrets
    )
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "{running.url}/oauth2callback"\n'
        f'cookie_secret = "{secrets_module.token_hex(32)}"\n'
        "[auth.lab]\n"
        'client_id = "studio"\n'
        'client_secret = "studio-secret"\n'
        f'server_metadata_url = "{identity_provider}/.well-known/openid-configuration"\n',
        encoding="utf-8",
    )
    running.start()
    yield running
    running.stop()
    stop_trainers(team_home)
    assert_no_traceback(running)


def _until(condition, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _context(browser, url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    wait_idle(page)
    return context, page


def _set_password(page, name: str, code: str) -> None:
    page.get_by_text("Set a password with a setup code").click()
    page.get_by_label("New password again").wait_for()
    page.get_by_label("Account name", exact=True).fill(name)
    page.get_by_label("Setup code", exact=True).fill(code)
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("New password again").fill(PASSWORD)
    page.get_by_role("button", name="Set the password and sign in").click()
    page.get_by_text(f"Signed in as {name}").wait_for(timeout=60_000)
    wait_idle(page)


def _sign_in(page, name: str, password: str) -> None:
    page.get_by_label("Account name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    wait_idle(page)


def _new_account(page, name: str) -> str:
    """The owner creates a member on the Team page; the setup code shown once."""
    page.get_by_label("Account name", exact=True).fill(name)
    page.get_by_role("button", name="Create the account").click()
    _until(lambda: page.get_by_text(f"Created {name}").count(), f"the account {name}")
    wait_idle(page)  # the code is drawn after the line above it: read it once the run has ended
    form = page.get_by_test_id("stForm").filter(has_text=f"Created {name}")
    code = form.locator("[data-testid='stCode'] code").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-9]{4}(-[A-Z2-9]{4}){3}", code), code
    return code


def test_two_members_each_see_only_their_own_work_and_the_shared_adapter(
    browser, team_server, team_home, tiny_model_dir, tmp_path
):
    url = team_server.url
    owner_context, owner = _context(browser, url)  # the first visit creates the owner account
    owner.get_by_text("Sign in to 翻译机器人").wait_for()
    code = _until(
        lambda: (
            (m := re.search(r"setup code \(valid \d+ h\): (\S+)", team_server.log_tail(20_000)))
            and m.group(1)
        ),
        "the owner's setup code in the server's output",
    )
    _set_password(owner, "owner", code)
    owner.goto(f"{url}/team")
    wait_idle(owner)
    codes = {name: _new_account(owner, name) for name in ("ana", "bo")}
    owner.screenshot(path=str(tmp_path / "accounts.png"), full_page=True)

    db = connect(team_home / "registry.db")
    ana, bo = account_rows.by_name(db, "ana"), account_rows.by_name(db, "bo")
    base = f"local:{tiny_model_dir}"
    for seed, (name, who, shared) in enumerate((("ana-private", ana, 0), ("ana-shared", ana, 1)), 1):
        folder = make_adapter(tiny_model_dir, team_home / "adapters" / name, seed=seed)
        row = register_adapter(db, name, folder, base)
        with db.conn:
            db["adapters"].update(row.id, {"owner_id": who.id, "shared": shared})
    talk = conversations.create(db, title="ana's secret talk", owner_id=ana.id)
    conversations.add_message(db, talk["id"], "user", "the secret")
    job = jobs.create(db, adapter_name="ana-job", config={}, owner_id=ana.id, status="cancelled")

    ana_context, ana_page = _context(browser, url)
    _set_password(ana_page, "ana", codes["ana"])
    bo_context, bo_page = _context(browser, url)
    _set_password(bo_page, "bo", codes["bo"])

    # each sees their own conversations only, and their own adapters and the shared one
    ana_page.goto(f"{url}/?c={talk['id']}")
    wait_idle(ana_page)
    ana_page.get_by_text("ana's secret talk").first.wait_for()
    bo_page.goto(f"{url}/?c={talk['id']}")
    wait_idle(bo_page)
    bo_page.get_by_text(f"There is no conversation #{talk['id']} you can use").wait_for()
    assert bo_page.get_by_text("ana's secret talk").count() == 0
    assert bo_page.get_by_text("the secret").count() == 0

    bo_page.goto(f"{url}/?adapter=ana-private")
    wait_idle(bo_page)
    bo_page.get_by_text("There is no adapter ana-private you can use").wait_for()
    bo_page.goto(f"{url}/adapters")
    wait_idle(bo_page)
    bo_page.get_by_text("ana-shared").first.wait_for()
    assert bo_page.get_by_text("ana-private").count() == 0
    ana_page.goto(f"{url}/adapters")
    wait_idle(ana_page)
    ana_page.get_by_text("ana-private").first.wait_for()

    # the shared adapter answers both
    for page in (ana_page, bo_page):
        page.goto(f"{url}/?adapter=ana-shared")
        wait_idle(page)
        box = page.get_by_test_id("stChatInputTextArea")
        box.fill("Hello there!")
        box.press("Enter")

    def replies():
        return [m for m in db["messages"].rows_where("role = 'assistant'") if m["adapter"] == "ana-shared"]

    _until(lambda: len(replies()) == 2, "both replies of the shared adapter", 120)
    owners = {conversations.get(db, m["conversation_id"])["owner_id"] for m in replies()}
    assert owners == {ana.id, bo.id}

    # bo cannot open, let alone stop, ana's job
    bo_page.goto(f"{url}/train?job={job.id}")
    wait_idle(bo_page)
    bo_page.get_by_text(f"There is no job #{job.id} you can use").wait_for()
    assert bo_page.get_by_role("button", name="Resume").count() == 0

    # a reload keeps the session; signing out ends it, and a reload does not bring it back
    ana_page.reload()
    wait_idle(ana_page)
    ana_page.get_by_text("Signed in as ana").wait_for()
    ana_page.get_by_role("button", name="Sign out").click()
    ana_page.get_by_text("Sign in to 翻译机器人").wait_for()
    ana_page.reload()
    wait_idle(ana_page)
    ana_page.get_by_text("Sign in to 翻译机器人").wait_for()
    assert ana_page.get_by_text("Signed in as ana").count() == 0
    _sign_in(ana_page, "ana", PASSWORD)
    ana_page.get_by_text("Signed in as ana").wait_for()

    # wrong passwords are throttled: after five, even the right one waits
    guess_context, guesser = _context(browser, url)

    def failures():
        return db["login_attempts"].count_where("name = 'bo' and succeeded = 0")

    for attempt in range(1, 6):
        _sign_in(guesser, "bo", "not the password")
        _until(lambda attempt=attempt: failures() == attempt, f"failed sign-in {attempt} recorded")
        guesser.get_by_text("The account name or password is wrong.").wait_for()
    _sign_in(guesser, "bo", PASSWORD)
    guesser.get_by_text("Too many failed sign-ins").wait_for()
    assert guesser.get_by_text("Signed in as bo").count() == 0

    # the owner's audit trail has the sign-ins, the failures and the sign-out
    owner.goto(f"{url}/team")
    wait_idle(owner)
    actions = {row["action"] for row in account_rows.audit_trail(db)}
    assert {"login", "login_failed", "logout", "account_created", "password_set"} <= actions
    for context in (owner_context, ana_context, bo_context, guess_context):
        context.close()


def test_signing_in_through_the_labs_identity_provider_picks_the_account_of_its_email(
    browser, team_server, team_home
):
    """OpenID Connect through Streamlit's st.login against a real provider process: the provider's
    form vouches for an email; the account the owner made with that email is signed in, and an
    email without an account is refused."""
    from studio import accounts

    db = connect(team_home / "registry.db")
    if account_rows.by_name(db, "cara") is None:
        accounts.create_account(db, "cara", "member", email="cara@lab.example")
    url = team_server.url

    def through_the_provider(email: str):
        context, page = _context(browser, url)
        page.get_by_role("button", name="Sign in with lab").click()
        page.locator("input[name='sub']").wait_for(timeout=60_000)  # the provider's own page
        page.locator("input[name='sub']").fill(email)
        page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(f"{url}/**", timeout=60_000)
        wait_idle(page)
        return context, page

    context, page = through_the_provider("cara@lab.example")
    page.get_by_text("Signed in as cara (member)").wait_for(timeout=60_000)
    page.reload()
    wait_idle(page)
    page.get_by_text("Signed in as cara").wait_for()
    page.get_by_role("button", name="Sign out").click()
    # Streamlit's st.logout ends the provider's session too (RP-initiated logout), on its page
    page.get_by_role("button", name="End session").click(timeout=60_000)
    page.wait_for_url(f"{url}/**", timeout=60_000)
    page.get_by_text("Sign in to 翻译机器人").wait_for(timeout=60_000)
    context.close()
    stranger_context, stranger = through_the_provider("stranger@elsewhere.example")
    stranger.get_by_text("stranger@elsewhere.example has no account in this studio").wait_for()
    assert stranger.get_by_text("Signed in as").count() == 0
    stranger_context.close()
    logins = [row for row in account_rows.audit_trail(db, action="login") if row["object"] == "oidc"]
    assert [row["account_name"] for row in logins] == ["cara"]
