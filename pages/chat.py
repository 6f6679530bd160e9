"""Chat with the base model or any adapter; compare them side by side; translate a text."""

import functools

import streamlit as st

from core import texts
from engine.roles import Decoding
from pages import common
from registry import adapters as adapter_rows
from registry import conversations
from serving import remote
from serving.remote import RemoteEngine
from studio import blind
from studio.conversation import (
    adapter_from_link,
    adapter_label,
    adapters_for_base,
    answering_role,
    base_choices,
    conversation_to_open,
    provenance,
    respond,
)
from studio.roles import get_role, list_roles
from training.scores import evaluation_examples


def start_conversation() -> None:
    """A new conversation gets its row with its first message (see the chat input below)."""
    st.session_state["conversation"] = None


def delete_conversation(conversation_id: int) -> None:
    conversations.delete(common.registry(), conversation_id)
    st.session_state["conversation"] = None


common.enter_through_entry()
db = common.registry()
all_adapters = adapter_rows.list_all(db)
roles = list_roles(db)
role_names = [role.name for role in roles]


def local_choice() -> tuple[str, list[dict], dict | None, str]:
    """The sidebar's base model and adapter (a link's ?adapter= chooses both)."""
    linked = adapter_from_link(
        st.query_params.get("adapter", ""), all_adapters, st.session_state.get("followed_link")
    )
    if linked is not None:
        st.session_state["followed_link"] = linked["name"]
        st.session_state["base_model"] = linked["base_model"]
        st.session_state["adapter_choice"] = linked["name"]
    bases = base_choices(common.default_base_model(), all_adapters)
    base_model = st.selectbox(texts.BASE_MODEL, bases, key="base_model")
    usable = adapters_for_base(all_adapters, base_model)

    options = ["", *(a["name"] for a in usable)]
    if st.session_state.get("adapter_choice") not in options:
        st.session_state["adapter_choice"] = ""
    adapter_name = st.selectbox(
        texts.ADAPTER, options, format_func=lambda name: adapter_label(name, usable), key="adapter_choice"
    )
    st.query_params["adapter"] = adapter_name
    st.session_state["followed_link"] = adapter_name
    adapter = next((a for a in usable if a["name"] == adapter_name), None)
    return base_model, usable, adapter, adapter_name


def remote_choice() -> RemoteEngine | None:
    """The sidebar's fields for a model served elsewhere; None until one is chosen."""
    url = st.text_input(texts.REMOTE_URL, value=remote.DEFAULT_URL, key="remote-url").strip()
    api_key = st.text_input(texts.REMOTE_KEY, type="password", key="remote-key", help=texts.REMOTE_KEY_HELP)
    served = common.show_user_error(remote.list_models, url, api_key) if url else None
    if not served:
        return None
    return RemoteEngine(url, st.selectbox(texts.REMOTE_MODEL, served, key="remote-model"), api_key)


# --- sidebar: base model, adapter (grouped by role), role and its settings, conversations --------
with st.sidebar:
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
        base_model, usable, adapter, adapter_name = local_choice()
    default_role = adapter["role"] if adapter and adapter["role"] in role_names else "assistant"
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
    with st.expander(texts.DECODING, expanded=False):
        preset = role.decoding
        key = f"{role.name}-{adapter_name}"
        do_sample = st.toggle(texts.SAMPLING, value=preset.do_sample, key=f"sample-{key}")
        bounds = functools.partial(common.decoding_bounds, preset=preset)
        decoding = Decoding(
            do_sample=do_sample,
            temperature=st.slider(
                texts.TEMPERATURE, *bounds("temperature"), key=f"t-{key}", disabled=not do_sample
            ),
            top_p=st.slider(texts.TOP_P, *bounds("top_p"), key=f"p-{key}", disabled=not do_sample),
            repetition_penalty=st.slider(
                texts.REPETITION_PENALTY, *bounds("repetition_penalty"), key=f"r-{key}"
            ),
            max_new_tokens=st.number_input(texts.MAX_NEW_TOKENS, *bounds("max_new_tokens"), key=f"m-{key}"),
        )

    st.subheader(texts.CONVERSATIONS)
    st.button(texts.NEW_CONVERSATION, width="stretch", on_click=start_conversation)
    existing = conversations.list_all(db)
    ids = [c["id"] for c in existing]
    if "pending_conversation" in st.session_state:  # created by this session's first message
        st.session_state["conversation"] = st.session_state.pop("pending_conversation")
    st.session_state["conversation"] = conversation_to_open(
        st.session_state.get("conversation"),
        "conversation" not in st.session_state,
        str(st.query_params.get("c", "")),
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

if source == "remote":
    if far is None:
        st.info(texts.REMOTE_CHOOSE)
        st.stop()
    engine = far
    st.caption(texts.REMOTE_CAPTION.format(model=far.model, url=far.url))
    modes = ["chat"]  # compare, blind votes and translation run on the local engine
else:
    engine = common.engine_or_stop(base_model)
    dtype_name = str(engine.dtype).removeprefix("torch.")
    st.caption(
        texts.ENGINE_CAPTION.format(model=engine.base_model_id, device=engine.device, dtype=dtype_name)
    )
    modes = ["chat", "compare"] + (["translate"] if role.metric == "translation" else [])
if st.session_state.get("mode") not in modes:
    st.session_state["mode"] = "chat"
mode = st.segmented_control(texts.MODE, modes, format_func=texts.MODES.get, required=True, key="mode")

if mode == "chat":
    for message in conversations.messages(db, current_id) if current_id is not None else []:
        with st.chat_message(message["role"]):
            st.markdown(message["content"])
            if message["role"] == "assistant":
                st.caption(provenance(message), help=str(message["settings"]))
    if prompt := st.chat_input(texts.MESSAGE_PLACEHOLDER, submit_mode="disable"):
        if current_id is None:
            current_id = conversations.create(db)["id"]
            st.session_state["pending_conversation"] = current_id
            st.query_params["c"] = str(current_id)  # a reload during the reply finds it
        with st.chat_message("user"):
            st.markdown(prompt)
        with st.chat_message("assistant"):
            stream = respond(db, engine, current_id, prompt, role=role, adapter=adapter, decoding=decoding)
            common.show_user_error(st.write_stream, stream)
        st.rerun()

elif mode == "compare":
    others = [a["name"] for a in usable]
    if not others:
        st.info(texts.NO_ADAPTER_FOR_BASE)
    chosen = st.multiselect(
        texts.COMPARE_WITH, others, default=others[:1], max_selections=2, key="compare-with"
    )
    blind_test = st.toggle(texts.BLIND, help=texts.BLIND_HELP, key="blind", disabled=not chosen)
    examples = [e for a in usable if a["name"] in chosen for e in evaluation_examples(db, a)]
    if examples:
        st.selectbox(
            texts.EXAMPLE_FROM_EVALUATION,
            ["", *dict.fromkeys(e["input"] for e in examples)],
            key="compare-example",
            on_change=lambda: st.session_state.update(
                {"compare-prompt": st.session_state["compare-example"]}
            ),
        )
    # A form: one click submits what was typed (a plain button stays disabled until the text area
    # loses focus, so the first click would only blur it).
    with st.form("compare-form", border=False):
        prompt = st.text_area(texts.COMPARE_PROMPT, key="compare-prompt")
        submitted = st.form_submit_button(texts.COMPARE_RUN, key="compare-run", type="primary")
    reference = next((e["reference"] for e in examples if e["input"] == prompt), None)
    if reference:
        st.caption(f"{texts.REFERENCE}: {reference}")
    if submitted and not prompt.strip():
        st.warning(texts.TYPE_SOMETHING)
    elif submitted and blind_test:
        shown = blind.draw_order(*blind.contenders(chosen))
        answers = []
        for column, label, name in zip(st.columns(2), "AB", shown, strict=True):
            with column:
                st.markdown(f"**{texts.BLIND_ANSWER.format(label=label)}**")
                contender = next((a for a in usable if a["name"] == name), None)
                stream = engine.stream(
                    prompt, role=answering_role(db, contender, role), adapter=contender, decoding=decoding
                )
                answers.append(common.show_user_error(st.write_stream, stream) or "")
        st.session_state["blind-round"] = blind.Round(prompt, base_model, shown, tuple(answers))
        st.session_state.pop("blind-voted", None)
        st.rerun()
    elif submitted:
        contenders = [None, *(a for a in usable if a["name"] in chosen)]
        for column, contender in zip(st.columns(len(contenders)), contenders, strict=True):
            with column:
                contender_role = answering_role(db, contender, role)
                st.markdown(
                    f"**{contender['name'] if contender else texts.BASE_ONLY}** · {contender_role.label}"
                )
                stream = engine.stream(prompt, role=contender_role, adapter=contender, decoding=decoding)
                common.show_user_error(st.write_stream, stream)
    round_ = st.session_state.get("blind-round")
    if blind_test and round_ is not None and round_.base_model == base_model:
        for column, label, answer in zip(st.columns(2), "AB", round_.answers, strict=True):
            column.markdown(f"**{texts.BLIND_ANSWER.format(label=label)}**")
            column.markdown(answer)
        voted = st.session_state.get("blind-voted")
        if voted is None:
            buttons = st.columns(3)
            for column, choice, label in zip(
                buttons, ("a", "tie", "b"), (texts.VOTE_A, texts.VOTE_TIE, texts.VOTE_B), strict=True
            ):
                if column.button(label, key=f"vote-{choice}", width="stretch"):
                    blind.record(db, round_, choice)
                    st.session_state["blind-voted"] = choice
                    st.rerun()
        else:
            a, b = (name or texts.BASE_ONLY for name in round_.shown)
            st.success(texts.BLIND_REVEAL.format(a=a, b=b))

else:
    with st.form("translate-form", border=False):
        source = st.text_area(texts.TRANSLATE_INPUT, height=150, key="translate-input")
        submitted = st.form_submit_button(texts.TRANSLATE_RUN, key="translate-run", type="primary")
    if submitted and not source.strip():
        st.warning(texts.TYPE_SOMETHING)
    elif submitted:
        st.markdown(f"**{texts.TRANSLATE_OUTPUT}**")
        for line in (line.strip() for line in source.splitlines()):
            if line:
                stream = engine.stream(line, role=role, adapter=adapter, decoding=decoding)
                common.show_user_error(st.write_stream, stream)
