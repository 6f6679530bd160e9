"""Team mode without a browser: accounts, setup codes, sign-in and its throttle, sessions, API keys,
who may see and change what, the upgrade of a single-user registry, and the fair queue."""

import os
import time

import pytest

from core.errors import UserError
from registry import accounts as account_rows
from registry import conversations
from registry import jobs as job_rows
from studio import accounts
from studio import adapters as studio_adapters
from studio.accounts import LOCAL, Asker
from tests.conftest import call_main, lora_folder, register_adapter

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def english(monkeypatch):
    monkeypatch.setenv("TRANSLATOR_LANG", "en")


def signed_up(db, name: str, role: str = "member") -> Asker:
    account, code = accounts.create_account(db, name, role)
    accounts.redeem_setup_code(db, name, code, PASSWORD)
    return Asker(account_rows.by_name(db, name), address="10.0.0.9")


def test_the_owner_gets_a_one_time_code_and_no_default_password(db):
    code = accounts.ensure_owner(db)
    owner = account_rows.by_name(db, "owner")
    assert owner.role == "owner" and owner.password_hash is None  # nothing to sign in with yet
    assert accounts.ensure_owner(db) is None  # only on the first start
    with pytest.raises(UserError, match="name or password is wrong"):
        accounts.sign_in(db, "owner", "")
    accounts.redeem_setup_code(db, "owner", code.lower(), PASSWORD)  # typed in lower case: still the code
    account, token = accounts.sign_in(db, "owner", PASSWORD)
    assert account.name == "owner" and accounts.session_account(db, token).id == owner.id
    with pytest.raises(UserError, match="already used"):  # a code works once
        accounts.redeem_setup_code(db, "owner", code, "another long password")


def test_setup_code_refusals_expired_short_password_and_unknown_names_read_alike(db):
    account, code = accounts.create_account(db, "ana")
    with pytest.raises(UserError, match="at least 10 characters"):
        accounts.redeem_setup_code(db, "ana", code, "short")
    wrong_code = pytest.raises(UserError, match="name or setup code is wrong")
    with wrong_code as for_a_known_name:
        accounts.redeem_setup_code(db, "ana", "AAAA-BBBB-CCCC-DDDD", PASSWORD)
    with pytest.raises(UserError) as for_an_unknown_name:
        accounts.redeem_setup_code(db, "nobody", code, PASSWORD)
    assert str(for_a_known_name.value) == str(for_an_unknown_name.value)
    expired = accounts.issue_setup_code(db, account, seconds=-1)
    with pytest.raises(UserError, match="expired"):
        accounts.redeem_setup_code(db, "ana", expired, PASSWORD)
    assert account_rows.by_name(db, "ana").password_hash is None


def test_sign_in_refusals_say_nothing_about_which_names_exist(db):
    signed_up(db, "ana")
    with pytest.raises(UserError) as wrong_password:
        accounts.sign_in(db, "ana", "not the password", "10.0.0.1")
    with pytest.raises(UserError) as unknown_name:
        accounts.sign_in(db, "nobody", "not the password", "10.0.0.1")
    assert str(wrong_password.value) == str(unknown_name.value) == "The account name or password is wrong."


def test_repeated_wrong_passwords_are_throttled_per_account_and_per_address(db):
    signed_up(db, "ana")
    for _ in range(accounts.MAX_FAILURES_PER_NAME):
        with pytest.raises(UserError, match="is wrong"):
            accounts.sign_in(db, "ana", "guess", "10.0.0.1")
    # now even the right password waits, from any address: the account is being guessed at
    with pytest.raises(UserError, match=r"Too many failed sign-ins: try again in 1[45] min"):
        accounts.sign_in(db, "ana", PASSWORD, "10.0.0.2")
    # one address guessing across many names is stopped too
    for number in range(accounts.MAX_FAILURES_PER_ADDRESS):
        with pytest.raises(UserError):
            accounts.sign_in(db, f"name{number}", "guess", "10.0.0.3")
    signed_up(db, "bo")
    with pytest.raises(UserError, match="Too many failed sign-ins"):
        accounts.sign_in(db, "bo", PASSWORD, "10.0.0.3")
    assert accounts.sign_in(db, "bo", PASSWORD, "10.0.0.4")[0].name == "bo"
    failed = account_rows.audit_trail(db, action="login_failed")
    assert len(failed) >= accounts.MAX_FAILURES_PER_NAME and failed[-1]["address"] == "10.0.0.1"


def test_sessions_end_on_sign_out_expire_and_refuse_forged_tokens(db):
    ana = signed_up(db, "ana")
    _, token = accounts.sign_in(db, "ana", PASSWORD)
    assert accounts.session_account(db, token).name == "ana"
    assert accounts.session_account(db, token + "x") is None
    assert accounts.session_account(db, "forged") is None
    accounts.sign_out(db, token, ana)
    assert accounts.session_account(db, token) is None
    _, later = accounts.sign_in(db, "ana", PASSWORD)
    with db.conn:
        db.execute("update sessions set expires_at = ?", [time.time() - 1])
    assert accounts.session_account(db, later) is None
    actions = [row["action"] for row in account_rows.audit_trail(db)]
    assert {"login", "logout", "password_set", "account_created"} <= set(actions)


def test_keys_are_shown_once_stored_hashed_and_stop_working_when_revoked(db):
    ana = signed_up(db, "ana")
    key = accounts.create_key(db, ana, "notebook")
    assert key.startswith(accounts.KEY_PREFIX)
    assert accounts.key_account(db, key).name == "ana"
    listed = account_rows.keys_of(db, ana.id)
    assert listed[0]["prefix"] == key[:10] and "key_hash" not in listed[0]
    bo = signed_up(db, "bo")
    with pytest.raises(UserError, match="no live key numbered"):
        accounts.revoke_key(db, bo, listed[0]["id"])  # not bo's to revoke
    accounts.revoke_key(db, ana, listed[0]["id"])
    assert accounts.key_account(db, key) is None
    with pytest.raises(UserError, match="team-mode accounts"):
        accounts.create_key(db, LOCAL)


def test_the_registry_holds_no_password_code_token_or_key_in_the_clear(db, home):
    account, code = accounts.create_account(db, "ana")
    accounts.redeem_setup_code(db, "ana", code, PASSWORD)
    _, token = accounts.sign_in(db, "ana", PASSWORD)
    key = accounts.create_key(db, Asker(account_rows.by_name(db, "ana")))
    secrets = [PASSWORD, code, token, key, key[len(accounts.KEY_PREFIX) :]]
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for path in home.glob("registry.db*"):
        raw = path.read_bytes()
        assert not [s for s in secrets if s.encode() in raw], f"{path.name} holds a secret in the clear"
    for table in db.table_names():
        for row in db[table].rows:
            text = repr(row)
            assert not [s for s in secrets if s in text], table
    assert account_rows.by_name(db, "ana").password_hash.startswith("$argon2id$")


def test_a_member_sees_and_changes_only_their_own_and_uses_what_is_shared(db, home):
    ana, bo = signed_up(db, "ana"), signed_up(db, "bo")
    owner = Asker(account_rows.create(db, "boss", "owner"))
    viewer = signed_up(db, "vic", "viewer")
    for name, who in (("ana-private", ana), ("ana-shared", ana), ("bo-own", bo)):
        adapter = register_adapter(db, name, lora_folder(home / "adapters" / name), "builtin")
        with db.conn:
            db["adapters"].update(adapter.id, {"owner_id": who.id})
    studio_adapters.share(db, "ana-shared", True, ana)

    def names(asker):
        return sorted(a.name for a in accounts.visible_adapters(db, asker))

    assert names(ana) == ["ana-private", "ana-shared"]
    assert names(bo) == ["ana-shared", "bo-own"]
    assert names(viewer) == ["ana-shared"]
    assert names(owner) == names(LOCAL) == ["ana-private", "ana-shared", "bo-own"]
    with pytest.raises(UserError) as missing:
        accounts.visible_adapter(db, bo, "no-such-adapter")
    with pytest.raises(UserError) as private:
        accounts.visible_adapter(db, bo, "ana-private")
    # another's private adapter is refused exactly as one that does not exist
    assert str(private.value).replace("ana-private", "X") == str(missing.value).replace(
        "no-such-adapter", "X"
    )
    assert accounts.visible_adapter(db, bo, "ana-shared").name == "ana-shared"
    for act in (
        lambda: studio_adapters.rename(db, "ana-shared", "mine-now", bo),
        lambda: studio_adapters.delete(db, "ana-private", bo),
        lambda: studio_adapters.share(db, "ana-private", True, bo),
        lambda: studio_adapters.delete(db, "ana-shared", viewer),
    ):
        with pytest.raises(UserError, match="There is no adapter"):
            act()
    from exporters import requests

    with pytest.raises(UserError, match="There is no adapter ana-shared you can use"):
        requests.start(db, "ana-shared", "merge", bo)
    assert names(LOCAL) == ["ana-private", "ana-shared", "bo-own"]  # nothing was changed
    studio_adapters.delete(db, "bo-own", owner)  # the owner may
    assert [row["action"] for row in account_rows.audit_trail(db, action="delete")] == ["delete"]


def test_conversations_and_jobs_belong_to_who_made_them(db):
    from training.jobs import lifecycle

    ana, bo = signed_up(db, "ana"), signed_up(db, "bo")
    owner = Asker(account_rows.create(db, "boss", "owner"))
    mine = conversations.create(db, owner_id=ana.id)
    theirs = conversations.create(db, owner_id=bo.id)
    assert ana.lists(mine["owner_id"]) and not ana.lists(theirs["owner_id"])
    assert ana.owns(mine["owner_id"]) and not ana.owns(theirs["owner_id"]) and owner.owns(theirs["owner_id"])
    job = job_rows.create(db, adapter_name="ana-job", config={}, owner_id=ana.id, status="queued")
    assert [j.id for j in lifecycle.list_recent(db, asker=ana)] == [job.id]
    assert lifecycle.list_recent(db, asker=bo) == [] and lifecycle.get(db, job.id, bo) is None
    with pytest.raises(UserError, match="There is no job #"):
        lifecycle.cancel(db, job.id, bo)
    with pytest.raises(UserError, match="There is no job #"):
        lifecycle.resume(db, job.id, asker=bo)
    with pytest.raises(UserError, match="A viewer account can chat and look only"):
        lifecycle.check_request(db, {"name": "x"}, asker=signed_up(db, "vic", "viewer"))


def test_a_single_user_registry_upgraded_to_team_mode_keeps_every_row_for_the_owner(db, home):
    # rows made before team mode: no owner
    register_adapter(db, "old-adapter", lora_folder(home / "adapters" / "old-adapter"), "builtin")
    talk = conversations.create(db, title="old talk")
    conversations.add_message(db, talk["id"], "user", "hello")
    job = job_rows.create(db, adapter_name="old-adapter", config={}, status="succeeded")
    before = {table: db[table].count for table in ("adapters", "conversations", "messages", "jobs")}
    accounts.ensure_owner(db)  # the first start with --team
    owner = Asker(account_rows.by_name(db, "owner"))
    member = signed_up(db, "ana")
    assert {table: db[table].count for table in before} == before
    assert [a.name for a in accounts.visible_adapters(db, owner)] == ["old-adapter"]
    assert owner.lists(talk["owner_id"]) and owner.owns(job.owner_id)
    assert accounts.visible_adapters(db, member) == [] and not member.lists(talk["owner_id"])
    # starting without --team again: one person, who sees everything
    assert [a.name for a in accounts.visible_adapters(db, LOCAL)] == ["old-adapter"]
    assert LOCAL.lists(talk["owner_id"]) and LOCAL.owns(job.owner_id)


def test_a_command_line_in_team_mode_acts_as_the_owner_of_its_key(db, monkeypatch):
    ana = signed_up(db, "ana")
    assert accounts.cli_asker(db) is LOCAL
    accounts.remember_mode(db, True)  # the app was last started with --team
    monkeypatch.delenv(accounts.KEY_VARIABLE, raising=False)
    with pytest.raises(UserError, match="TRANSLATOR_KEY"):
        accounts.cli_asker(db)
    monkeypatch.setenv(accounts.KEY_VARIABLE, accounts.create_key(db, ana))
    assert accounts.cli_asker(db).name == "ana"
    monkeypatch.setenv(accounts.KEY_VARIABLE, "sk-tr-forged")
    result = call_main("training.train", "--name", "x", "--data", "data/translator_sample.jsonl")
    assert result.returncode != 0 and "TRANSLATOR_KEY" in result.stderr + result.stdout


def test_two_peoples_jobs_interleave_fairly_on_a_two_gpu_pool(db, monkeypatch, capsys):
    """The queue's order with the trainer's own loop (queue.turn, then devices.try_take) on a
    simulated 2-GPU pool: ana queues four jobs, then bo two; each job takes one GPU and runs until
    the oldest running job ends. Printed: the order the jobs started in."""
    from engine import devices
    from training.jobs import queue

    monkeypatch.setenv(devices.SIMULATED, "0,1")
    ana, bo = signed_up(db, "ana"), signed_up(db, "bo")
    queued = []
    for number, who in enumerate([ana] * 4 + [bo] * 2):
        job = job_rows.create(
            db,
            adapter_name=f"{who.name}-{number}",
            config={},
            owner_id=who.id,
            status="queued",
            pid=os.getpid(),
        )
        queued.append(job.id)
    names = {job_id: job_rows.get(db, job_id).adapter_name for job_id in queued}
    holdings, started = {}, []
    while len(started) < len(queued):
        for job_id in queued:  # every waiting trainer polls once
            if job_id in holdings or job_id in started:
                continue
            if queue.turn(db, job_id) is None and (holding := devices.try_take(1, job_id)) is not None:
                holdings[job_id] = holding
                started.append(job_id)
                job_rows.update(db, job_id, devices=holding.visible_devices(), status="running")
        if len(holdings) == 2 or len(started) == len(queued):  # the pool is full: the oldest ends
            first = next(job_id for job_id in started if job_id in holdings)
            holdings.pop(first).release()
            job_rows.update(db, first, status="succeeded")
    order = [names[job_id] for job_id in started]
    print("fair order:", " → ".join(order))
    assert order == ["ana-0", "bo-4", "ana-1", "bo-5", "ana-2", "ana-3"]
    assert "fair order: ana-0 → bo-4" in capsys.readouterr().out


def test_a_queued_job_says_whose_jobs_go_first_and_an_account_at_its_limit_waits_out_of_line(db):
    from training.jobs import queue

    ana, bo = signed_up(db, "ana"), signed_up(db, "bo")
    running = job_rows.create(db, adapter_name="ana-run", config={}, owner_id=ana.id, status="running")
    job_rows.update(db, running.id, devices="0", eta_seconds=600, pid=os.getpid())
    first = job_rows.create(
        db, adapter_name="bo-1", config={}, owner_id=bo.id, status="queued", pid=os.getpid()
    )
    second = job_rows.create(
        db, adapter_name="ana-2", config={}, owner_id=ana.id, status="queued", pid=os.getpid()
    )
    assert queue.turn(db, first.id) is None  # bo holds nothing: first in line
    said = str(queue.turn(db, second.id))
    assert (
        said == "Queued: in fair order, jobs of bo go first (1 ahead); the first device frees in about 10 min"
    )
    account_rows.update(db, ana.id, max_jobs=1)
    assert str(queue.turn(db, second.id)) == "Queued: ana has 1 jobs running, the limit the owner set is 1"
    later = job_rows.create(
        db, adapter_name="bo-3", config={}, owner_id=bo.id, status="queued", pid=os.getpid()
    )
    assert "(1 ahead)" in str(queue.turn(db, later.id))  # ana's job at its limit blocks nobody


def test_preference_pairs_from_votes_take_only_the_askers_own_votes(db):
    from engine.roles import PERSONA
    from studio import blind
    from training.data import pairs

    ana, bo = signed_up(db, "ana"), signed_up(db, "bo")
    context = tuple(blind.context(PERSONA, "plain") for _ in range(2))
    for who, answers in ((ana, ("臣妾在。", "I am here.")), (bo, ("回皇上。", "Hello."))):
        round_ = blind.Round("今日可好？", "builtin", ("huanhuan", ""), answers, context)
        blind.record(db, round_, "a", owner_id=who.id)
    chosen = {}
    for who in (ana, bo):
        chosen[who.name] = [
            r["chosen"] for r in pairs.from_votes(db, "builtin", "persona", asker=who).records
        ]
    assert chosen == {"ana": ["臣妾在。"], "bo": ["回皇上。"]}
    assert len(pairs.from_votes(db, "builtin", "persona").records) == 2  # one person: every vote


def test_the_runs_listing_in_team_mode_shows_the_keys_account_its_runs_only(db, monkeypatch):
    ana, bo = signed_up(db, "ana"), signed_up(db, "bo")
    job_rows.create(db, adapter_name="ana-job", config={}, owner_id=ana.id, status="succeeded")
    job_rows.create(db, adapter_name="bo-job", config={}, owner_id=bo.id, status="succeeded")
    accounts.remember_mode(db, True)
    monkeypatch.setenv(accounts.KEY_VARIABLE, accounts.create_key(db, bo))
    listed = call_main("studio.runs", "--json")
    assert listed.returncode == 0 and "bo-job" in listed.stdout and "ana-job" not in listed.stdout
    monkeypatch.setenv(accounts.KEY_VARIABLE, "sk-tr-revoked-or-forged")
    refused = call_main("studio.runs")
    assert refused.returncode == 2 and "TRANSLATOR_KEY" in refused.stderr


def test_the_accounts_command_line_adds_accounts_and_issues_codes_that_set_passwords(db):
    added = call_main("studio.accounts", "add", "dan", "--role", "viewer", "--email", "dan@lab.example")
    assert added.returncode == 0 and "Created dan" in added.stdout
    code = added.stdout.split()[-1]
    accounts.redeem_setup_code(db, "dan", code, PASSWORD)
    fresh = call_main("studio.accounts", "code", "dan").stdout.split()[-1]
    accounts.redeem_setup_code(db, "dan", fresh, "a brand new password")  # a reset
    assert accounts.sign_in(db, "dan", "a brand new password")[0].role == "viewer"
    listed = call_main("studio.accounts", "list").stdout
    assert "dan\tviewer\tdan@lab.example\tpassword set" in listed and code not in listed
    refused = call_main("studio.accounts", "add", "../etc", "--role", "member")
    assert refused.returncode == 2 and "is not allowed" in refused.stderr
    unknown = call_main("studio.accounts", "code", "nobody")
    assert unknown.returncode == 2 and "There is no account nobody" in unknown.stderr


def test_the_export_and_chat_command_lines_refuse_another_accounts_private_adapter(
    db, home, monkeypatch, tmp_path
):
    ana, bo = signed_up(db, "ana"), signed_up(db, "bo")
    adapter = register_adapter(db, "ana-private", lora_folder(home / "adapters" / "ana-private"), "builtin")
    with db.conn:
        db["adapters"].update(adapter.id, {"owner_id": ana.id})
    accounts.remember_mode(db, True)
    monkeypatch.setenv(accounts.KEY_VARIABLE, accounts.create_key(db, bo))
    for module, *args in (
        ("exporters.merge", "--adapter", "ana-private", "--out", tmp_path / "out" / "merged"),
        ("exporters.gguf", "--adapter", "ana-private", "--out", tmp_path / "out" / "model.gguf"),
        ("exporters.hub", "--adapter", "ana-private", "--repo", "bo/stolen"),
        (
            "training.evaluation.evaluate",
            "--adapter",
            "ana-private",
            "--data",
            "data/translator_sample.jsonl",
        ),
        ("studio.chat", "hello", "--adapter", "ana-private"),
    ):
        refused = call_main(module, *args)
        assert refused.returncode == 2, (module, refused.stdout, refused.stderr)
        assert "There is no adapter ana-private you can use" in refused.stderr, module
    assert not (tmp_path / "out").exists()
    assert [row["action"] for row in account_rows.audit_trail(db, action="export")] == []
