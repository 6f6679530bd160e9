"""Reward tuning (GRPO): prompts with references, rewards people can read and weigh (or a judge),
a GRPO job continuing an adapter, watched live with each reward's curve and its latest answers."""

import streamlit as st

from core import texts
from registry import jobs as job_rows
from studio.accounts import visible_adapters
from studio.roles import get_role
from training.jobs import lifecycle
from ui import common, team
from ui import preferences as preference_sections
from ui import rewards as sections
from ui import training as training_sections

common.enter_through_entry()
db = common.registry()
asker = team.asker()
st.title(texts.GRPO_TITLE)
st.caption(texts.GRPO_INTRO)

start = preference_sections.starting_point(db, visible_adapters(db, asker), key="grpo")
st.markdown(f"**{texts.GRPO_DATA}**")
data_path, data_title, data_problem = training_sections.data_choice(start.role_name, key="grpo")
weights = sections.reward_weights(start, get_role(db, start.role_name).metric)
form = {**sections.settings(start), **weights}

suggested = f"{start.parent.name}-grpo" if start.parent else ""
name = st.text_input(texts.ADAPTER_NAME, value=suggested, key=f"grpo-name-{suggested}")
if data_path is None:
    st.caption(data_problem)
if st.button(texts.GRPO_START, type="primary", disabled=data_path is None):
    with st.spinner(texts.CHECKING):
        job = common.show_user_error(sections.start_job, db, start, data_path, form, name)
    if job:
        st.query_params["job"] = str(job.id)

requested = st.query_params.get("job")
newest = lifecycle.newest_of(db, ("grpo",), asker)
job_id = int(requested) if requested and requested.isdigit() else (newest.id if newest else None)
if job_id is not None and (job := lifecycle.get(db, job_id, asker)) is not None:
    st.divider()
    active = job.status in job_rows.ACTIVE
    st.fragment(training_sections.job_panel, run_every=2 if active else None)(job_id, job.status)
