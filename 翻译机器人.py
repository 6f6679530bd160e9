"""翻译机器人 — LoRA adapter studio. Run: streamlit run 翻译机器人.py --server.port 6006"""

import streamlit as st

from pages import common, texts

common.leave_legacy_multipage_mode(in_entry=True)
st.set_page_config(page_title=texts.APP_TITLE, page_icon="🤖", layout="wide")
navigation = st.navigation(
    [
        st.Page("pages/chat.py", title=texts.PAGE_CHAT, icon="💬", default=True),  # served at /
        st.Page("pages/train.py", title=texts.PAGE_TRAIN, icon="🏋️", url_path="train"),
        st.Page("pages/adapters.py", title=texts.PAGE_ADAPTERS, icon="🗂️", url_path="adapters"),
    ]
)
with common.run_from_entry():
    navigation.run()
