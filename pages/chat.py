"""Chat with the base model or any registered adapter (the full page arrives with the app issue)."""

import streamlit as st

from engine.generation import ChatEngine
from engine.roles import get_role, list_roles
from registry import adapters as adapter_rows
from registry import connect

BASE_ONLY = "基座模型 (no adapter)"


@st.cache_resource(show_spinner="正在加载基座模型 Loading the base model…")
def shared_engine(base_model: str) -> ChatEngine:
    return ChatEngine(base_model)


db = connect()
engine = shared_engine("builtin")
usable = [a for a in adapter_rows.list_all(db) if a["base_model"] == engine.base_model_id]
with st.sidebar:
    st.caption(f"基座 base: `{engine.base_model_id}`")
    choice = st.selectbox("适配器 Adapter", [BASE_ONLY, *(a["name"] for a in usable)])
    adapter = next((a for a in usable if a["name"] == choice), None)
    role_names = [role.name for role in list_roles(db)]
    default_role = adapter["role"] if adapter and adapter["role"] in role_names else "assistant"
    role = get_role(db, st.selectbox("角色 Role", role_names, index=role_names.index(default_role)))

st.title("翻译机器人")
history = st.session_state.setdefault("history", [])
for question, answer in history:
    st.chat_message("user").write(question)
    st.chat_message("assistant").write(answer)
if prompt := st.chat_input("输入消息 Message", submit_mode="disable"):
    st.chat_message("user").write(prompt)
    with st.chat_message("assistant"):
        answer = st.write_stream(engine.stream(prompt, role=role, adapter=adapter, history=history))
    history.append((prompt, answer))
