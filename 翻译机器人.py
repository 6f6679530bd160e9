"""翻译机器人 — LoRA adapter studio. Run: streamlit run 翻译机器人.py --server.port 6006"""

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from pages import texts

# With a `pages/` folder, Streamlit's first run after start emulates the old multipage API and
# lists every file in it; st.navigation switches that off, and one rerun shows our pages instead.
legacy_first_run = bool(getattr(PagesManager, "uses_pages_directory", False))

st.set_page_config(page_title=texts.APP_TITLE, page_icon="🤖", layout="wide")
navigation = st.navigation(
    [
        st.Page("pages/chat.py", title=texts.PAGE_CHAT, icon="💬", url_path="chat", default=True),
        st.Page("pages/train.py", title=texts.PAGE_TRAIN, icon="🏋️", url_path="train"),
        st.Page("pages/adapters.py", title=texts.PAGE_ADAPTERS, icon="🗂️", url_path="adapters"),
    ]
)
if legacy_first_run:
    st.rerun()
navigation.run()
