"""Roles: the built-in ones and the user's own (system prompt, prompt format, decoding preset, metric)."""

import streamlit as st

from core import texts
from engine.roles import METRICS, Decoding, Role
from studio.roles import delete_custom_role, list_roles, role_users, save_custom_role
from ui import common

FORMAT_CHOICES = ("", "chat_template", "plain", "yuan")

common.enter_through_entry()
db = common.registry()
st.title(texts.ROLES_TITLE)
roles = list_roles(db)
users = role_users(db)
st.dataframe(
    [
        {
            texts.ROLE_NAME: role.name,
            texts.ROLE_TITLE: role.label,
            texts.ROLE_FORMAT: role.prompt_format or texts.FORMAT_OF_BASE,
            texts.ROLE_METRIC: texts.METRIC_NAMES[role.metric],
            texts.DECODING: role.decoding.describe(),
            texts.ROLE_SYSTEM_PROMPT: role.system_prompt,
            texts.ROLE_USED_BY: ", ".join(users.get(role.name, [])),
            texts.ROLE_BUILTIN: "✅" if role.builtin else "",
        }
        for role in roles
    ],
    width="stretch",
    hide_index=True,
)

custom = [role.name for role in roles if not role.builtin]
chosen = st.selectbox(
    texts.ROLE_EDIT, ["", *custom], format_func=lambda name: name or texts.ROLE_NEW, key="role-to-edit"
)
current = next((role for role in roles if role.name == chosen), Role(name="", title=""))
with st.form(f"role-form-{chosen}"):
    left, right = st.columns(2)
    name = left.text_input(texts.ROLE_NAME, current.name, disabled=bool(chosen), key=f"role-name-{chosen}")
    title = right.text_input(texts.ROLE_TITLE, current.title, key=f"role-title-{chosen}")
    system_prompt = st.text_area(texts.ROLE_SYSTEM_PROMPT, current.system_prompt, key=f"role-system-{chosen}")
    instruction = st.text_input(texts.ROLE_INSTRUCTION, current.instruction, key=f"role-instruction-{chosen}")
    left, middle, right = st.columns(3)
    prompt_format = left.selectbox(
        texts.ROLE_FORMAT,
        FORMAT_CHOICES,
        index=FORMAT_CHOICES.index(current.prompt_format),
        format_func=lambda value: value or texts.FORMAT_OF_BASE,
        key=f"role-format-{chosen}",
    )
    metric = middle.selectbox(
        texts.ROLE_METRIC,
        METRICS,
        index=METRICS.index(current.metric),
        format_func=texts.METRIC_NAMES.get,
        key=f"role-metric-{chosen}",
    )
    uses_history = right.checkbox(texts.ROLE_HISTORY, current.uses_history, key=f"role-history-{chosen}")
    preset = current.decoding
    columns = st.columns(8)
    labels = (
        texts.TEMPERATURE,
        texts.TOP_P,
        texts.REPETITION_PENALTY,
        texts.MAX_NEW_TOKENS,
        texts.NUM_BEAMS,
        texts.LENGTH_PENALTY,
        texts.MBR_SAMPLES,
    )
    settings = (
        "temperature",
        "top_p",
        "repetition_penalty",
        "max_new_tokens",
        "num_beams",
        "length_penalty",
        "mbr_samples",
    )
    decoding = Decoding(
        do_sample=columns[0].checkbox(texts.SAMPLING, preset.do_sample, key=f"role-sample-{chosen}"),
        **{
            setting: column.number_input(
                label, *common.decoding_bounds(setting, preset), key=f"role-{short}-{chosen}"
            )
            for column, label, setting, short in zip(columns[1:], labels, settings, "tprmblx", strict=True)
        },
    )
    if st.form_submit_button(texts.SAVE, type="primary"):
        role = Role(
            name=chosen or name,
            title=title,
            system_prompt=system_prompt,
            instruction=instruction,
            decoding=decoding,
            uses_history=uses_history,
            prompt_format=prompt_format,
            metric=metric,
        )
        if common.show_user_error(save_custom_role, db, role):
            st.success(texts.ROLE_SAVED.format(name=role.name))

if chosen:
    confirmed = st.checkbox(texts.ROLE_DELETE_CONFIRM.format(name=chosen), key=f"role-confirm-{chosen}")
    if st.button(texts.DELETE, disabled=not confirmed, key=f"role-delete-{chosen}"):
        if common.show_user_error(delete_custom_role, db, chosen):
            del st.session_state["role-to-edit"]
            st.rerun()
