"""The chat page's sidebar: where the reply comes from (base model and adapter, or a server
elsewhere), the role and its decoding settings, and the list of conversations."""

import functools
from dataclasses import dataclass

import streamlit as st

from core import texts
from engine.roles import Decoding, Role
from registry import conversations
from serving import remote
from serving.remote import RemoteEngine
from studio.accounts import Asker
from studio.conversation import (
    adapter_from_link,
    adapter_label,
    adapters_for_base,
    base_choices,
    conversation_to_open,
)
from studio.roles import get_role, list_roles
from ui import common


@dataclass
class SidebarChoice:
    """What the sidebar chose: the source ("local" or "remote"), the base model and the adapter
    (local), the remote engine (remote), the role and the decoding settings."""

    source: str
    base_model: str
    usable: list[dict]  # the adapters this base can use
    adapter: dict | None
    adapter_name: str
    far: RemoteEngine | None
    role: Role
    decoding: Decoding


def start_conversation() -> None:
    """A new conversation gets its row with its first message (see the chat input)."""
    st.session_state["conversation"] = None


def delete_conversation(conversation_id: int) -> None:
    conversations.delete(common.registry(), conversation_id)
    st.session_state["conversation"] = None


def choose(db, all_adapters: list[dict]) -> SidebarChoice:
    """The source, model, adapter, role and decoding settings (call inside `st.sidebar`)."""
    roles = list_roles(db)
    role_names = [role.name for role in roles]
    source = st.segmented_control(
        texts.CHAT_SOURCE,
        ["local", "remote"],
        format_func=texts.CHAT_SOURCES.get,
        required=True,
        default="local",
        key="chat-source",
    )
    if source == "remote":  # a model served elsewhere: no adapter to pick here, the server has them
        far, base_model, usable, adapter, adapter_name = remote_choice(), "", [], None, ""
    else:
        far = None
        base_model, usable, adapter, adapter_name = local_choice(all_adapters)
    default_role = adapter.role if adapter and adapter.role in role_names else "assistant"
    role = get_role(
        db,
        st.selectbox(
            texts.ROLE,
            role_names,
            index=role_names.index(default_role),
            format_func=lambda name: next(r.label for r in roles if r.name == name),
            key=f"role-for-{adapter_name}",
        ),
    )
    decoding = decoding_settings(role.decoding, f"{role.name}-{adapter_name}")
    return SidebarChoice(source, base_model, usable, adapter, adapter_name, far, role, decoding)


def local_choice(all_adapters: list[dict]) -> tuple[str, list[dict], dict | None, str]:
    """The sidebar's base model and adapter (a link's ?adapter= chooses both)."""
    requested = st.query_params.get("adapter", "")
    linked = adapter_from_link(requested, all_adapters, st.session_state.get("followed_link"))
    if requested and linked is None and requested != st.session_state.get("followed_link"):
        # a link to an adapter this person may not use reads exactly like one to a missing adapter
        st.error(texts.ERR_NOT_FOUND_FOR_YOU.format(what=texts.OBJECT_KINDS["adapter"], name=requested))
    if linked is not None:
        st.session_state["followed_link"] = linked.name
        st.session_state["base_model"] = linked.base_model
        st.session_state["adapter_choice"] = linked.name
    bases = base_choices(common.default_base_model(), all_adapters)
    base_model = st.selectbox(texts.BASE_MODEL, bases, key="base_model")
    usable = adapters_for_base(all_adapters, base_model)

    options = ["", *(a.name for a in usable)]
    if st.session_state.get("adapter_choice") not in options:
        st.session_state["adapter_choice"] = ""
    adapter_name = st.selectbox(
        texts.ADAPTER, options, format_func=lambda name: adapter_label(name, usable), key="adapter_choice"
    )
    st.query_params["adapter"] = adapter_name
    st.session_state["followed_link"] = adapter_name
    adapter = next((a for a in usable if a.name == adapter_name), None)
    return base_model, usable, adapter, adapter_name


def remote_choice() -> RemoteEngine | None:
    """The sidebar's fields for a model served elsewhere; None until one is chosen."""
    url = st.text_input(texts.REMOTE_URL, value=remote.DEFAULT_URL, key="remote-url").strip()
    api_key = st.text_input(texts.REMOTE_KEY, type="password", key="remote-key", help=texts.REMOTE_KEY_HELP)
    served = common.show_user_error(remote.list_models, url, api_key) if url else None
    if not served:
        return None
    return RemoteEngine(url, st.selectbox(texts.REMOTE_MODEL, served, key="remote-model"), api_key)


def decoding_settings(preset: Decoding, key: str) -> Decoding:
    with st.expander(texts.DECODING, expanded=False):
        do_sample = st.toggle(texts.SAMPLING, value=preset.do_sample, key=f"sample-{key}")
        bounds = functools.partial(common.decoding_bounds, preset=preset)
        mbr = st.session_state.get(f"mbr-{key}", preset.mbr_samples) > 1
        chosen = Decoding(
            do_sample=do_sample,
            temperature=st.slider(
                texts.TEMPERATURE, *bounds("temperature"), key=f"t-{key}", disabled=not (do_sample or mbr)
            ),
            top_p=st.slider(texts.TOP_P, *bounds("top_p"), key=f"p-{key}", disabled=not (do_sample or mbr)),
            repetition_penalty=st.slider(
                texts.REPETITION_PENALTY, *bounds("repetition_penalty"), key=f"r-{key}"
            ),
            max_new_tokens=st.number_input(texts.MAX_NEW_TOKENS, *bounds("max_new_tokens"), key=f"m-{key}"),
            num_beams=st.number_input(
                texts.NUM_BEAMS, *bounds("num_beams"), key=f"b-{key}", disabled=do_sample
            ),
            length_penalty=st.slider(
                texts.LENGTH_PENALTY, *bounds("length_penalty"), key=f"lp-{key}", disabled=do_sample
            ),
            mbr_samples=st.number_input(
                texts.MBR_SAMPLES,
                *bounds("mbr_samples"),
                key=f"mbr-{key}",
                disabled=do_sample,
                help=texts.MBR_HELP,
            ),
        )
    # sampling draws one answer: the greyed beams and MBR fields keep their values for when it is off
    if do_sample:
        return chosen.with_changes(num_beams=1, mbr_samples=0)
    return chosen.with_changes(num_beams=1) if chosen.mbr else chosen


def conversation_list(db, asker: Asker) -> int | None:
    """This person's saved conversations with new, rename and delete; returns the open one (None: a
    new one). A link's ?c= opens a conversation only for whoever may open it."""
    st.subheader(texts.CONVERSATIONS)
    st.button(texts.NEW_CONVERSATION, width="stretch", on_click=start_conversation)
    existing = [c for c in conversations.list_all(db) if asker.lists(c.get("owner_id"))]
    linked = str(st.query_params.get("c", ""))
    if linked.isdigit() and all(c["id"] != int(linked) for c in existing):
        other = conversations.get(db, int(linked))
        if other is not None and asker.owns(other.get("owner_id")):
            existing.append(other)  # the owner following a link to a member's conversation
        elif "conversation" not in st.session_state:
            st.error(
                texts.ERR_NOT_FOUND_FOR_YOU.format(what=texts.OBJECT_KINDS["conversation"], name=f"#{linked}")
            )
    ids = [c["id"] for c in existing]
    if "pending_conversation" in st.session_state:  # created by this session's first message
        st.session_state["conversation"] = st.session_state.pop("pending_conversation")
    st.session_state["conversation"] = conversation_to_open(
        st.session_state.get("conversation"),
        "conversation" not in st.session_state,
        linked,
        ids,
    )
    current_id = st.radio(
        texts.CONVERSATIONS,
        ids,
        key="conversation",
        # Streamlit tells options apart by their label, and many conversations are called 新对话.
        format_func=lambda cid: f"{next(c['title'] for c in existing if c['id'] == cid)} · #{cid}",
        label_visibility="collapsed",
    )
    if current_id is None:
        st.query_params.pop("c", None)
        st.caption(texts.NEW_CONVERSATION_HINT)
    else:
        st.query_params["c"] = str(current_id)
    with st.popover(texts.RENAME + " / " + texts.DELETE, width="stretch", disabled=current_id is None):
        new_title = st.text_input(texts.RENAME, key=f"title-{current_id}")
        if st.button(texts.RENAME, key=f"rename-{current_id}"):
            if common.show_user_error(conversations.rename, db, current_id, new_title) is None:
                st.rerun()
        st.button(
            texts.CONFIRM_DELETE,
            key=f"delete-{current_id}",
            type="primary",
            on_click=delete_conversation,
            args=(current_id,),
        )
    return current_id
