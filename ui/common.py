"""Streamlit glue shared by the pages: navigation, the resident chat engines, the registry connection."""

import contextlib
import os
import sqlite3
import threading

import streamlit as st

# transformers resolves its names lazily, and that lazy import is not thread-safe: two sessions
# loading models at once could see a half-imported module ("cannot import name 'AutoTokenizer'",
# seen in CI). Import what the engine uses once, here, under Python's import lock (engine.generation
# imports the rest of its transformers names at module level for the same reason).
from peft import PeftModel  # noqa: F401
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

from core import texts
from core.errors import UserError
from engine import catalogue, resident
from engine.generation import ChatEngine
from engine.roles import DECODING_LIMITS
from registry import connect, preferences
from registry import tasks as task_rows
from serving import tasks
from studio import accounts, supervisor

PAGES = (
    # (file, title in core.texts, icon, url path); the first is the default page, served at /
    ("pages/chat.py", "PAGE_CHAT", "💬", None),
    ("pages/train.py", "PAGE_TRAIN", "🏋️", "train"),
    ("pages/adapters.py", "PAGE_ADAPTERS", "🗂️", "adapters"),
    ("pages/preferences.py", "PAGE_PREFERENCES", "🎯", "preferences"),
    ("pages/rewards.py", "PAGE_REWARDS", "🏅", "rewards"),
    ("pages/roles.py", "PAGE_ROLES", "🎭", "roles"),
)
TEAM_PAGE = ("pages/team.py", "PAGE_TEAM", "👥", "team")
_entry_run = threading.local()  # each session's script runs in its own thread


def app_pages(team: bool = False) -> list:
    return [
        st.Page(
            file,
            title=getattr(texts, title),
            icon=icon,
            default=url is None,
            **({"url_path": url} if url else {}),
        )
        for file, title, icon, url in (*PAGES, *([TEAM_PAGE] if team else []))
    ]


def choose_language() -> None:
    """The language of this run: the session's choice, else the studio's saved one, else Chinese.
    Runs before anything is drawn, so every text of the run speaks it."""
    if st.session_state.get("language") not in texts.LANGUAGES:
        st.session_state["language"] = preferences.get(registry(), "language", texts.default_language())
    texts.use(st.session_state["language"])


def language_switch() -> None:
    st.segmented_control(
        texts.LANGUAGE,
        texts.LANGUAGES,
        format_func=texts.LANGUAGE_NAMES.get,
        required=True,
        key="language",
        on_change=lambda: preferences.put(registry(), "language", st.session_state["language"]),
        label_visibility="collapsed",
    )


@contextlib.contextmanager
def run_from_entry():
    """The entry script runs the chosen page inside this, so a page knows how it was started."""
    _entry_run.active = True
    try:
        yield
    finally:
        _entry_run.active = False


def enter_through_entry() -> None:
    """Every page starts with this. Our `pages/` folder (its name is fixed by the product's shape)
    makes Streamlit's first runs after a start use its legacy pages-folder mode, which runs a page
    file such as pages/train.py on its own for a URL like /train. Only documented behaviour is used
    to leave it: `st.navigation` switches the pages-folder mode off, and `client.showSidebarNavigation
    = false` (.streamlit/config.toml) keeps that mode's automatic list of page files from ever
    showing. A page run outside the entry declares our navigation and reruns, so the entry takes
    over. tests/e2e pins this on a fresh server."""
    if not getattr(_entry_run, "active", False):
        st.navigation(app_pages(team=accounts.team_mode()), position="hidden")
        st.rerun()


@st.cache_resource
def reconciler():
    """This server process's one reconciler (studio.supervisor.Reconciler), started by the first
    page run: it writes down runs whose process is gone, so pages only ever read."""
    return supervisor.Reconciler().start()


def task_progress(task_id: int, line: str, stop_key: str) -> None:
    """A detached task's line (`line` formats its id, status and stage) and its Stop, for a fragment
    that refreshes it; once the task has ended the whole page runs again and shows the outcome."""
    db = registry()
    task = tasks.get(db, task_id)
    if task.status not in task_rows.ACTIVE:
        st.rerun(scope="app")
    status = texts.STATUS.get(task.status, task.status)
    st.info(line.format(id=task.id, status=status, stage=task.stage or "…"))
    if st.button(texts.EXPORT_STOP, key=f"{stop_key}-{task.id}"):
        if not asker().owns(task.owner_id):  # what another account started: refused as missing
            st.error(texts.ERR_NOT_FOUND_FOR_YOU.format(what=texts.OBJECT_KINDS["task"], name=f"#{task.id}"))
            return
        supervisor.stop(db, task)
        st.rerun(scope="app")


def asker() -> accounts.Asker:
    """Who runs this page: the one person of a single-user studio; in team mode the account the
    entry's sign-in gate (ui.team.gate) put in the session, which stops every other run."""
    if not accounts.team_mode():
        return accounts.LOCAL
    return st.session_state.get("team_asker", accounts.LOCAL)


def registry():
    """One connection per script run (sqlite connections belong to the thread that opened them);
    a registry that cannot be used stops the page with the reason."""
    try:
        return connect()
    except UserError as error:
        st.error(str(error))
        st.stop()


# One resident model per base, shared by every session (ChatEngine is thread-safe).
CHAT_ENGINES = resident.Resident(max_entries=2)


def engine_or_stop(base_model: str) -> ChatEngine:
    """The base model, with what is happening on screen while it loads: the first start converts
    the built-in model (about a minute on 2 cores), later starts load it in about a second."""
    status = st.empty()
    try:
        with status.container():
            return CHAT_ENGINES.get(
                base_model,
                lambda progress: ChatEngine(base_model, progress=progress),
                show_progress=model_progress,
            )
    except UserError as error:
        st.error(str(error))
        st.stop()
    finally:
        status.empty()


def model_progress():
    """A progress bar for a model being fetched or converted, as `engine.models` reports it, and the
    callback that moves it (engine.resident calls both from the session's own thread)."""
    bar = st.progress(0.0, text=texts.LOADING_BASE)
    return lambda fraction, stage: bar.progress(min(max(fraction, 0.0), 1.0), text=stage)


def step_progress():
    """A progress bar for a request's long steps (a model converted, a large file tokenised), drawn
    at the first report: a quick Start shows none."""
    bar = None

    def report(fraction: float, stage: str) -> None:
        nonlocal bar
        bar = bar or st.progress(0.0)
        bar.progress(min(max(fraction, 0.0), 1.0), text=stage)

    return report


def default_base_model() -> str:
    """The canonical id of the base chat opens with; TRANSLATOR_BASE_MODEL lets a GPU box default
    to its own model."""
    configured = os.environ.get("TRANSLATOR_BASE_MODEL", catalogue.CHINESE_BUILTIN)
    try:
        return catalogue.parse_model_id(configured).model_id
    except UserError as error:
        st.warning(texts.BASE_MODEL_SETTING.format(error=error))
        return catalogue.CHINESE_BUILTIN


def show_user_error(action, *args, **kwargs):
    """Run an action; a UserError, or a registry write that failed (locked past the busy timeout,
    disk full; its transaction rolled back), becomes a red message instead of a traceback."""
    try:
        return action(*args, **kwargs)
    except UserError as error:
        st.error(str(error))
    except sqlite3.OperationalError as error:
        st.error(texts.ERR_REGISTRY_WRITE.format(error=error))
    return None


def decoding_bounds(setting: str, preset) -> tuple:
    """(min, max, value, step) of a widget for one decoding setting, from engine.roles.DECODING_LIMITS."""
    limit = DECODING_LIMITS[setting]
    return limit.smallest, limit.high, getattr(preset, setting), limit.step
