"""Chat with the base model or any adapter; compare them side by side; translate a text."""

import streamlit as st

from core import texts
from registry import conversations
from studio.accounts import visible_adapters
from studio.conversation import provenance, respond
from ui import chat_sidebar, common, compare, team

common.enter_through_entry()
db = common.registry()
asker = team.asker()

# --- sidebar: base model, adapter (grouped by role), role and its settings, conversations --------
with st.sidebar:
    choice = chat_sidebar.choose(db, visible_adapters(db, asker))
    current_id = chat_sidebar.conversation_list(db, asker)

if choice.source == "remote":
    if choice.far is None:
        st.info(texts.REMOTE_CHOOSE)
        st.stop()
    engine = choice.far
    st.caption(texts.REMOTE_CAPTION.format(model=engine.model, url=engine.url))
    modes = ["chat"]  # compare, blind votes and translation run on the local engine
else:
    engine = common.engine_or_stop(choice.base_model)
    dtype_name = str(engine.dtype).removeprefix("torch.")
    st.caption(
        texts.ENGINE_CAPTION.format(model=engine.base_model_id, device=engine.device, dtype=dtype_name)
    )
    modes = ["chat", "compare"] + (["translate"] if choice.role.metric == "translation" else [])
if choice.source != "remote":
    compare.follow_compare_link(choice)
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
            current_id = conversations.create(db, owner_id=asker.id)["id"]
            st.session_state["pending_conversation"] = current_id
            st.query_params["c"] = str(current_id)  # a reload during the reply finds it
        with st.chat_message("user"):
            st.markdown(prompt)
        with st.chat_message("assistant"):
            stream = respond(
                db,
                engine,
                current_id,
                prompt,
                role=choice.role,
                adapter=choice.adapter,
                decoding=choice.decoding,
            )
            replied = common.show_user_error(st.write_stream, stream)
        if replied is not None:  # a refusal stays on screen instead of vanishing in the rerun
            st.rerun()
elif mode == "compare":
    compare.compare(db, engine, choice)
else:
    compare.translate(engine, choice)
