"""Every adapter in the registry: details, loss curve, checkpoints, scores, export and serve, rename,
change role, delete; and job history."""

import streamlit as st

from core import texts
from registry import adapters as adapter_rows
from registry import jobs as job_rows
from studio.accounts import visible_adapters
from studio.roles import list_roles
from ui import adapter_card, charts, common, team
from ui.exports import export_section

common.enter_through_entry()
db = common.registry()
asker = team.asker()
owners = team.owner_names(db) if team.active() else {}
st.title(texts.ADAPTERS_TITLE)
rows = visible_adapters(db, asker)
role_names = [role.name for role in list_roles(db)]
if not rows:
    st.info(texts.NO_ADAPTERS)
else:
    adapter_card.adapter_table(rows)
for adapter in rows:
    name = adapter.name
    with st.expander(f"{name} · {adapter.role} · {adapter.base_model}"):
        if team.active():
            st.caption(texts.OWNER_LABEL.format(name=owners.get(adapter.owner_id, "owner")))
        if not adapter_rows.folder_is_present(adapter):
            st.warning(texts.FOLDER_MISSING.format(path=adapter.path))
        adapter_card.lineage_section(db, adapter)
        st.caption(texts.SETTINGS_AND_METRICS)
        st.json({**adapter.hyperparameters, **adapter.metrics}, expanded=False)
        if adapter.job_id:
            charts.loss_curve(job_rows.metrics_for(db, adapter.job_id), height=150)
            adapter_card.checkpoint_section(db, adapter, asker)
            adapter_card.logs_section(db, adapter)
        adapter_card.scores_section(db, adapter, asker)
        st.page_link("pages/chat.py", label=texts.CHAT_WITH, query_params={"adapter": name})
        if adapter_rows.folder_is_present(adapter) and asker.owns(adapter.owner_id):
            export_section(db, adapter)
        adapter_card.manage_section(db, adapter, role_names, asker, team.active())

adapter_card.votes_table(db, {adapter.name for adapter in rows})
adapter_card.job_history(db, asker)
