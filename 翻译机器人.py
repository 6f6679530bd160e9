"""翻译机器人 — LoRA adapter studio. Run: streamlit run 翻译机器人.py --server.port 6006"""

import streamlit as st

from core import texts
from ui import common

common.choose_language()
st.set_page_config(page_title=texts.APP_TITLE, page_icon="🤖", layout="wide")
common.reconciler()
pages = common.app_pages()
# Our own links: the automatic sidebar navigation is off (see common.enter_through_entry).
navigation = st.navigation(pages, position="hidden")
with st.sidebar:
    common.language_switch()
    for page in pages:
        st.page_link(page)
    st.divider()
with common.run_from_entry():
    navigation.run()
