"""翻译机器人 — LoRA adapter studio. Run: streamlit run 翻译机器人.py --server.port 6006
(add `-- --team` for a studio a lab shares: accounts, sign-in, each person's own work)."""

import streamlit as st

from core import texts
from ui import common, team

common.choose_language()
st.set_page_config(page_title=texts.APP_TITLE, page_icon="🤖", layout="wide")
common.reconciler()
warning = team.start_once()
asker = team.gate()
pages = common.app_pages(team=team.active())
# Our own links: the automatic sidebar navigation is off (see common.enter_through_entry).
navigation = st.navigation(pages, position="hidden")
with st.sidebar:
    common.language_switch()
    team.signed_in_box(asker)
    for page in pages:
        st.page_link(page)
    st.divider()
if warning:
    st.warning(warning)
with common.run_from_entry():
    navigation.run()
