"""Team mode in the browser: the sign-in page, the session that survives a reload, and who asks.

The session token lives in the session's state and, so a reload keeps the person signed in, in a
cookie the page sets (`SameSite=Strict`). Streamlit offers no server-side way to set a cookie of our
own, so the cookie is set by a script and is readable by scripts on the page; what protects it is
that the server checks its hash against a live, unexpired session row at every run, and signing
out ends that row. Sign-in through the lab's identity provider is Streamlit's own `st.login`
(OpenID Connect, configured in `.streamlit/secrets.toml`); its verified email picks the account.
"""

import json
import time

import streamlit as st

from core import texts
from core.errors import UserError
from registry import accounts as account_rows
from studio import accounts
from studio.accounts import LOCAL, Asker
from ui import common

COOKIE = "translator_session"
_TOKEN = "team_session_token"
_COOKIE_TO_WRITE = "team_cookie_to_write"


def active() -> bool:
    return accounts.team_mode()


@st.cache_resource
def start_once() -> str:
    """What the first page run of this server process does: in team mode, the owner account on the
    first start (its setup code printed in the terminal); without it, a warning when the studio
    listens beyond this machine. Returns the warning shown on every page (empty when none)."""
    db = common.registry()
    accounts.remember_mode(db, active())
    if active():
        code = accounts.ensure_owner(db)
        if code:
            print(
                texts.TEAM_OWNER_CREATED.format(
                    name="owner", hours=accounts.SETUP_CODE_SECONDS // 3600, code=code
                ),
                flush=True,
            )
        return ""
    address = str(st.get_option("server.address") or "")
    if address not in ("127.0.0.1", "localhost", "::1"):
        warning = texts.TEAM_BIND_WARNING.format(address=address or "0.0.0.0 (every address)")
        print(warning, flush=True)
        return warning
    return ""


def address() -> str:
    try:
        return st.context.ip_address or ""
    except Exception:  # noqa: BLE001 (no client address in AppTest)
        return ""


asker = common.asker


def gate() -> Asker:
    """In team mode, the signed-in account, or the sign-in page and a stopped run."""
    if not active():
        return LOCAL
    db = common.registry()
    token = st.session_state.get(_TOKEN) or st.context.cookies.get(COOKIE)
    account = accounts.session_account(db, token)
    if account is None and _provider_signed_in():
        try:
            account, token = accounts.sign_in_from_provider(db, dict(st.user), address())
            st.session_state[_COOKIE_TO_WRITE] = token
        except UserError as error:
            st.error(str(error))
            st.button(texts.LOGOUT, on_click=st.logout)
            st.stop()
    if account is None:
        st.session_state.pop(_TOKEN, None)
        st.session_state.pop("team_asker", None)
        _write_cookie(None if st.context.cookies.get(COOKIE) else ...)
        with st.sidebar:
            common.language_switch()
        sign_in_page(db)
        st.stop()
    st.session_state[_TOKEN] = token
    asked = Asker(account, address())
    st.session_state["team_asker"] = asked
    if st.session_state.get(_COOKIE_TO_WRITE):
        _write_cookie(st.session_state.pop(_COOKIE_TO_WRITE))
    return asked


def _provider_signed_in() -> bool:
    try:
        return bool(st.user.is_logged_in)
    except Exception:  # noqa: BLE001 (no [auth] section: no provider)
        return False


def providers() -> list[str]:
    """The identity providers configured under [auth] in secrets.toml ("" for the default one)."""
    try:
        section = st.secrets.get("auth", {})
    except Exception:  # noqa: BLE001 (no secrets file)
        return []
    if not section:
        return []
    named = [key for key, value in section.items() if hasattr(value, "keys")]
    return named or ([""] if "client_id" in section else [])


def _write_cookie(token) -> None:
    """Set the session cookie (a token), or remove it (None); `...` leaves it as it is."""
    if token is ...:
        return
    if token is None:
        value, age = "", 0
    else:
        value, age = token, accounts.SESSION_SECONDS
    cookie = f"{COOKIE}={value}; path=/; max-age={age}; SameSite=Strict"
    st.html(f"<script>document.cookie = {json.dumps(cookie)};</script>", unsafe_allow_javascript=True)


def sign_in_page(db) -> None:
    st.title(texts.LOGIN_TITLE)
    with_code = st.toggle(texts.LOGIN_WITH_CODE, key="login-with-code")
    with st.form("sign-in", enter_to_submit=True):
        name = st.text_input(texts.LOGIN_NAME, key="login-name")
        if with_code:
            code = st.text_input(texts.LOGIN_CODE, key="login-code")
            password = st.text_input(texts.LOGIN_NEW_PASSWORD, type="password", key="login-new-password")
            repeat = st.text_input(texts.LOGIN_REPEAT_PASSWORD, type="password", key="login-repeat")
            submitted = st.form_submit_button(texts.LOGIN_SET_PASSWORD, type="primary")
        else:
            password = st.text_input(texts.LOGIN_PASSWORD, type="password", key="login-password")
            submitted = st.form_submit_button(texts.LOGIN_SUBMIT, type="primary")
    if submitted:
        try:
            if with_code:
                if password != repeat:
                    raise UserError("ERR_PASSWORDS_DIFFER")
                accounts.redeem_setup_code(db, name, code, password, address())
            _, token = accounts.sign_in(db, name, password, address())
        except UserError as error:
            st.error(str(error))
        else:
            st.session_state[_TOKEN] = token
            st.session_state[_COOKIE_TO_WRITE] = token
            st.rerun()
    for provider in providers():
        label = texts.LOGIN_PROVIDER.format(provider=provider or "OpenID Connect")
        st.button(label, key=f"provider-{provider}", on_click=st.login, args=(provider,) if provider else ())
    st.caption(texts.LOGIN_FIRST_TIME)


def signed_in_box(asked: Asker) -> None:
    """The sidebar's line of who is signed in, and Sign out."""
    if asked.account is None:
        return
    role = texts.ACCOUNT_ROLES.get(asked.account.role, asked.account.role)
    st.caption(texts.SIGNED_IN_AS.format(name=asked.name, role=role))
    st.button(texts.LOGOUT, key="sign-out", on_click=sign_out, width="stretch")


def sign_out() -> None:
    db = common.registry()
    token = st.session_state.pop(_TOKEN, None)
    if token:
        accounts.sign_out(db, token, asker())
    st.session_state.pop("team_asker", None)
    st.session_state[_COOKIE_TO_WRITE] = None
    if _provider_signed_in():
        st.logout()


def owner_names(db) -> dict[int, str]:
    return account_rows.names_by_id(db)


def _when(timestamp) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else ""


def keys_section(db, asked: Asker) -> None:
    st.subheader(texts.TEAM_KEYS)
    st.caption(texts.TEAM_KEYS_HELP)
    columns = texts.TEAM_COLUMNS
    keys = account_rows.keys_of(db, asked.id)
    if keys:
        st.dataframe(
            [
                {
                    "#": key["id"],
                    columns["label"]: key["label"],
                    columns["prefix"]: key["prefix"] + "…",
                    columns["created"]: _when(key["created_at"]),
                    columns["last_used"]: _when(key["last_used_at"]),
                    columns["revoked"]: _when(key["revoked_at"]),
                }
                for key in keys
            ],
            hide_index=True,
        )
    else:
        st.caption(texts.TEAM_NO_KEYS)
    with st.form("new-key", clear_on_submit=True):
        label = st.text_input(texts.TEAM_KEY_LABEL, key="key-label")
        if st.form_submit_button(texts.TEAM_KEY_CREATE):
            key = common.show_user_error(accounts.create_key, db, asked, label)
            if key:
                st.success(texts.TEAM_KEY_CREATED)
                st.code(key, language=None)
    live = [key["id"] for key in keys if not key["revoked_at"]]
    if live:
        chosen = st.selectbox(texts.TEAM_KEY_REVOKE, live, format_func=lambda i: f"#{i}", key="key-to-revoke")
        if st.button(texts.TEAM_KEY_REVOKE, key="revoke-key"):
            if common.show_user_error(accounts.revoke_key, db, asked, chosen) is None:
                st.rerun()


def accounts_section(db, asked: Asker) -> None:
    st.subheader(texts.TEAM_ACCOUNTS)
    columns = texts.TEAM_COLUMNS
    every = account_rows.list_all(db)
    st.dataframe(
        [
            {
                columns["name"]: account.name,
                columns["role"]: texts.ACCOUNT_ROLES.get(account.role, account.role),
                columns["email"]: account.email or "",
                columns["password"]: "✅" if account.password_hash else "",
                columns["max_jobs"]: account.max_jobs or "",
                columns["created"]: _when(account.created_at),
            }
            for account in every
        ],
        hide_index=True,
    )
    hours = accounts.SETUP_CODE_SECONDS // 3600
    with st.form("new-account", clear_on_submit=True):
        st.markdown(f"**{texts.TEAM_NEW_ACCOUNT}**")
        name = st.text_input(texts.LOGIN_NAME, key="new-account-name")
        email = st.text_input(texts.TEAM_ACCOUNT_EMAIL, key="new-account-email")
        role = st.selectbox(
            texts.TEAM_ACCOUNT_ROLE,
            ["member", "viewer", "owner"],
            format_func=texts.ACCOUNT_ROLES.get,
            key="new-role",
        )
        if st.form_submit_button(texts.TEAM_ACCOUNT_CREATE, type="primary"):
            made = common.show_user_error(accounts.create_account, db, name, role, email=email, by=asked)
            if made:
                st.success(texts.TEAM_ACCOUNT_CREATED.format(name=made[0].name, hours=hours))
                st.code(made[1], language=None)
    names = [account.name for account in every]
    chosen = st.selectbox(texts.TEAM_ACCOUNTS, names, key="account-to-manage")
    account = account_rows.by_name(db, chosen) if chosen else None
    if account is None:
        return
    left, right = st.columns(2)
    if left.button(texts.TEAM_NEW_CODE, key=f"code-{account.id}"):
        code = accounts.issue_setup_code(db, account)
        account_rows.record_audit(
            db, "setup_code_issued", account=asked.account, obj=account.name, address=asked.address
        )
        left.success(texts.TEAM_ACCOUNT_CREATED.format(name=account.name, hours=hours))
        left.code(code, language=None)
    limit = right.number_input(
        texts.TEAM_MAX_JOBS, min_value=0, max_value=64, value=account.max_jobs or 0, key=f"limit-{account.id}"
    )
    if (limit or None) != account.max_jobs:
        account_rows.update(db, account.id, max_jobs=limit or None)


def audit_section(db) -> None:
    st.subheader(texts.TEAM_AUDIT)
    columns = texts.TEAM_COLUMNS
    st.dataframe(
        [
            {
                columns["at"]: _when(row["at"]),
                columns["name"]: row["account_name"] or "",
                columns["action"]: row["action"],
                columns["object"]: row["object"] or "",
                columns["address"]: row["address"] or "",
            }
            for row in account_rows.audit_trail(db)
        ],
        hide_index=True,
    )
