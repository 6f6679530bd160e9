"""翻译机器人 — LoRA adapter studio. Run: streamlit run 翻译机器人.py --server.port 6006"""

import streamlit as st

st.set_page_config(page_title="翻译机器人", page_icon="🤖", layout="wide")
navigation = st.navigation(
    [st.Page("pages/chat.py", title="对话 Chat", icon="💬", url_path="chat", default=True)]
)
navigation.run()
