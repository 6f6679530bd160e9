"""Train an adapter: choose base, role and data, preview it, start a detached job, watch it live."""

import streamlit as st

from core import texts
from engine import catalogue, conversion
from registry import jobs as job_rows
from studio.roles import list_roles
from training.jobs import lifecycle
from ui import common, team
from ui import training as sections

common.enter_through_entry()
db = common.registry()
asker = team.asker()
st.title(texts.TRAIN_TITLE)

if st.button(texts.DEMO_BUTTON, help=texts.DEMO_HELP, type="primary"):
    demo_job = common.show_user_error(
        lifecycle.start_demo, db, tokenizers=sections.page_tokenizer, asker=asker
    )
    if demo_job:
        st.query_params["job"] = str(demo_job.id)

roles = list_roles(db)
left, right = st.columns(2)
with left:
    base_choices = list(dict.fromkeys([common.default_base_model(), *catalogue.CATALOGUE]))
    base_model = st.selectbox(
        texts.BASE_MODEL,
        base_choices,
        accept_new_options=True,
        format_func=catalogue.model_label,
        key="train-base",  # keyed widgets keep their value when the language (their label) changes
    )
    terms = conversion.builtin_license(base_model)
    if terms is not None:
        st.caption(texts.MODEL_TERMS.format(path=terms))
    role_name = st.selectbox(
        texts.ROLE,
        [r.name for r in roles],
        format_func=lambda n: next(r.label for r in roles if r.name == n),
        key="train-role",
    )
    trust_remote_code = st.checkbox(texts.TRUST_REMOTE_CODE, value=False, key="train-trust-remote-code")
with right:
    data_path, data_title, data_problem = sections.data_choice(role_name)

settings = sections.hyperparameters(base_model)
shown = (
    sections.data_preview(db, data_path, data_title, role_name, base_model, settings) if data_path else None
)

adapter_name = st.text_input(texts.ADAPTER_NAME, key="adapter-name")
form = {
    "base": base_model,
    "data": data_path,
    "role": role_name,
    "name": adapter_name,
    "trust_remote_code": trust_remote_code,
    **settings,
}
sections.where_section(form)
sections.devices_section(form)
sections.tracking_section(form)
if shown is not None:
    sections.memory_section(base_model, shown, form)

start, find_lr = st.columns(2)
starting = start.button(texts.START, type="primary", key="train-start")
sweeping = find_lr.button(texts.SWEEP_START, help=texts.SWEEP_HELP, key="sweep-start")
if starting or sweeping:
    if not data_path:
        st.error(data_problem)
    else:
        with st.spinner(texts.CHECKING):
            job = common.show_user_error(
                lifecycle.submit_sweep if sweeping else lifecycle.submit_form,
                db,
                form,
                progress=common.step_progress(),
                tokenizers=sections.page_tokenizer,
                asker=asker,
            )
        if job:
            st.query_params["job"] = str(job.id)

recent = lifecycle.list_recent(db, limit=20, asker=asker)
requested = st.query_params.get("job")
job_id = int(requested) if requested and requested.isdigit() else (recent[0].id if recent else None)
if requested and requested.isdigit() and lifecycle.get(db, job_id, asker) is None:
    st.error(texts.ERR_NOT_FOUND_FOR_YOU.format(what=texts.OBJECT_KINDS["job"], name=f"#{requested}"))
if job_id is not None and (job := lifecycle.get(db, job_id, asker)) is not None:
    active = job.status in job_rows.ACTIVE
    st.divider()
    st.fragment(sections.job_panel, run_every=2 if active else None)(job_id, job.status)
