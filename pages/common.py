"""Streamlit glue shared by the pages: the resident chat engines and the registry connection."""

import os

import streamlit as st

from engine import models
from engine.generation import ChatEngine
from pages import texts
from registry import connect
from registry.errors import UserError


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
