"""Team: my API keys; for the owner, the accounts and the audit trail (team mode only)."""

import streamlit as st

from core import texts
from ui import common, team

common.enter_through_entry()
db = common.registry()
asker = team.asker()
st.title(texts.PAGE_TEAM)
team.keys_section(db, asker)
if asker.sees_everything:
    team.accounts_section(db, asker)
    team.audit_section(db)
