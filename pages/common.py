"""Streamlit glue shared by the pages: the resident chat engines and the registry connection."""

import contextlib
import os
import threading

import streamlit as st

# transformers resolves its names lazily, and that lazy import is not thread-safe: two sessions
# loading models at once could see a half-imported module ("cannot import name 'AutoTokenizer'",
# seen in CI). Import what the engine uses once, here, under Python's import lock (engine.generation
# imports the rest of its transformers names at module level for the same reason).
from peft import PeftModel  # noqa: F401
from streamlit.runtime.pages_manager import PagesManager
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

from engine import models
from engine.generation import ChatEngine
from pages import texts
from registry import connect
from registry.errors import UserError

_entry_run = threading.local()  # each session's script runs in its own thread


@contextlib.contextmanager
def run_from_entry():
    """The entry script wraps `navigation.run()` in this, so a page knows how it was started."""
    _entry_run.active = True
    try:
        yield
    finally:
        _entry_run.active = False


def leave_legacy_multipage_mode(in_entry: bool = False) -> None:
    """With a `pages/` folder next to the entry, Streamlit's first runs after a start emulate the old
    multipage API: they list every file in `pages/` and, for a URL such as /train, run that file
    without the entry, so st.navigation never gets to switch the emulation off. A page started any
    way but through the entry switches it off and reruns once; then our navigation takes over."""
    legacy = getattr(PagesManager, "uses_pages_directory", False)
    if legacy or (not in_entry and not getattr(_entry_run, "active", False)):
        if hasattr(PagesManager, "uses_pages_directory"):
            PagesManager.uses_pages_directory = False
        st.rerun()


def registry():
    """One connection per script run: sqlite connections belong to the thread that opened them."""
    return connect()


@st.cache_resource(show_spinner=False, max_entries=2)
def chat_engine(base_model: str) -> ChatEngine:
    """One resident model per base, shared by every session (ChatEngine is thread-safe)."""
    return ChatEngine(base_model)


def engine_or_stop(base_model: str) -> ChatEngine:
    try:
        with st.spinner(texts.LOADING_BASE):
            return chat_engine(base_model)
    except UserError as error:
        st.error(str(error))
        st.stop()


def default_base_model() -> str:
    """The canonical id of the base chat opens with; TRANSLATOR_BASE_MODEL lets a GPU box default
    to its own model."""
    configured = os.environ.get("TRANSLATOR_BASE_MODEL", "builtin")
    try:
        return models.parse_model_id(configured).model_id
    except UserError as error:
        st.warning(f"TRANSLATOR_BASE_MODEL: {error}")
        return "builtin"


def show_user_error(action, *args, **kwargs):
    """Run an action; a UserError becomes a red message instead of a traceback."""
    try:
        return action(*args, **kwargs)
    except UserError as error:
        st.error(str(error))
        return None
