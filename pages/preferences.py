"""Preference tuning: pairs from blind votes, a translator's own mistakes or a file, previewed as
the model will see them; a DPO, ORPO or KTO job continuing an adapter, watched live."""

import streamlit as st

from core import texts
from registry import jobs as job_rows
from studio.accounts import visible_adapters
from training.jobs import lifecycle
from ui import common, team
from ui import preferences as sections
from ui import training as training_sections

common.enter_through_entry()
db = common.registry()
asker = team.asker()
st.title(texts.PREFERENCE_TITLE)
st.caption(texts.PREFERENCE_INTRO)

start = sections.starting_point(db, visible_adapters(db, asker))
chosen = sections.data_choice(db, start)
form = sections.settings(start)
if chosen is not None:
    sections.preview_section(db, chosen, start, form)

suggested = f"{start.parent.name}-{form['method']}" if start.parent else ""
name = st.text_input(texts.ADAPTER_NAME, value=suggested, key=f"pref-name-{suggested}")
if st.button(texts.PREFERENCE_START, type="primary", disabled=chosen is None):
    with st.spinner(texts.CHECKING):
        job = common.show_user_error(sections.start_job, db, chosen, start, form, name)
    if job:
        st.query_params["job"] = str(job.id)

requested = st.query_params.get("job")
newest = lifecycle.newest_preference_job(db, asker)
job_id = int(requested) if requested and requested.isdigit() else (newest.id if newest else None)
if job_id is not None and (job := lifecycle.get(db, job_id, asker)) is not None:
    st.divider()
    active = job.status in job_rows.ACTIVE
    st.fragment(training_sections.job_panel, run_every=2 if active else None)(job_id, job.status)
