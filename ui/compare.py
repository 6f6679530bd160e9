"""The chat page's other modes: compare the base model and up to two adapters on one prompt
(side by side, or blind A/B with a vote), and translate a text line by line."""

import streamlit as st

from core import texts
from studio import blind
from studio.conversation import answering_role
from training.evaluation.scores import evaluation_examples
from ui import common
from ui.chat_sidebar import SidebarChoice


def follow_compare_link(choice: SidebarChoice) -> None:
    """?compare=NAME (the "compare with parent" links of the adapter card and the job panel): compare
    mode, the sidebar's adapter against NAME. Followed once; then the page is the user's."""
    wanted = st.query_params.get("compare")
    if wanted is None:
        return
    del st.query_params["compare"]
    if choice.adapter is not None and wanted in {a.name for a in choice.usable}:
        st.session_state["mode"] = "compare"
        st.session_state["compare-with"] = [choice.adapter.name, wanted]


def compare(db, engine, choice: SidebarChoice) -> None:
    usable, role, decoding, base_model = choice.usable, choice.role, choice.decoding, choice.base_model
    others = [a.name for a in usable]
    if not others:
        st.info(texts.NO_ADAPTER_FOR_BASE)
    child = choice.adapter
    if child is not None and child.parent_name in others:
        pair = [child.name, child.parent_name]
        st.button(
            texts.COMPARE_WITH_PARENT.format(parent=child.parent_name),
            key="compare-parent",
            on_click=lambda: st.session_state.update({"compare-with": pair}),
        )
    if st.session_state.get("compare-with") is not None:  # set by a link or the button above
        st.session_state["compare-with"] = [n for n in st.session_state["compare-with"] if n in others]
    chosen = st.multiselect(
        texts.COMPARE_WITH,
        others,
        default=None if "compare-with" in st.session_state else others[:1],
        max_selections=2,
        key="compare-with",
    )
    blind_test = st.toggle(texts.BLIND, help=texts.BLIND_HELP, key="blind", disabled=not chosen)
    examples = [e for a in usable if a.name in chosen for e in evaluation_examples(db, a)]
    if examples:
        st.selectbox(
            texts.EXAMPLE_FROM_EVALUATION,
            ["", *dict.fromkeys(e["input"] for e in examples)],
            key="compare-example",
            on_change=lambda: st.session_state.update(
                {"compare-prompt": st.session_state["compare-example"]}
            ),
        )
    # A form: one click submits what was typed (a plain button stays disabled until the text area
    # loses focus, so the first click would only blur it).
    with st.form("compare-form", border=False):
        prompt = st.text_area(texts.COMPARE_PROMPT, key="compare-prompt")
        submitted = st.form_submit_button(texts.COMPARE_RUN, key="compare-run", type="primary")
    reference = next((e["reference"] for e in examples if e["input"] == prompt), None)
    if reference:
        st.caption(f"{texts.REFERENCE}: {reference}")
    if submitted and not prompt.strip():
        st.warning(texts.TYPE_SOMETHING)
    elif submitted and blind_test:
        shown = blind.draw_order(*blind.contenders(chosen))
        answers, contexts = [], []
        for column, label, name in zip(st.columns(2), "AB", shown, strict=True):
            with column:
                st.markdown(f"**{texts.BLIND_ANSWER.format(label=label)}**")
                contender = next((a for a in usable if a.name == name), None)
                contender_role = answering_role(db, contender, role)
                stream = engine.stream(prompt, role=contender_role, adapter=contender, decoding=decoding)
                answers.append(common.show_user_error(st.write_stream, stream) or "")
                prompt_format = (contender.prompt_format if contender else "") or engine.prompt_format
                contexts.append(blind.context(contender_role, prompt_format))
        st.session_state["blind-round"] = blind.Round(
            prompt, base_model, shown, tuple(answers), tuple(contexts)
        )
        st.session_state.pop("blind-voted", None)
        st.rerun()
    elif submitted:
        contenders = [None, *(a for a in usable if a.name in chosen)]
        for column, contender in zip(st.columns(len(contenders)), contenders, strict=True):
            with column:
                contender_role = answering_role(db, contender, role)
                st.markdown(
                    f"**{contender.name if contender else texts.BASE_ONLY}** · {contender_role.label}"
                )
                stream = engine.stream(prompt, role=contender_role, adapter=contender, decoding=decoding)
                common.show_user_error(st.write_stream, stream)
    round_ = st.session_state.get("blind-round")
    if blind_test and round_ is not None and round_.base_model == base_model:
        for column, label, answer in zip(st.columns(2), "AB", round_.answers, strict=True):
            column.markdown(f"**{texts.BLIND_ANSWER.format(label=label)}**")
            column.markdown(answer)
        voted = st.session_state.get("blind-voted")
        if voted is None:
            buttons = st.columns(3)
            for column, choice, label in zip(
                buttons, ("a", "tie", "b"), (texts.VOTE_A, texts.VOTE_TIE, texts.VOTE_B), strict=True
            ):
                if column.button(label, key=f"vote-{choice}", width="stretch"):
                    blind.record(db, round_, choice, owner_id=common.asker().id)
                    st.session_state["blind-voted"] = choice
                    st.rerun()
        else:
            a, b = (name or texts.BASE_ONLY for name in round_.shown)
            st.success(texts.BLIND_REVEAL.format(a=a, b=b))


def translate(engine, choice: SidebarChoice) -> None:
    with st.form("translate-form", border=False):
        source = st.text_area(texts.TRANSLATE_INPUT, height=150, key="translate-input")
        submitted = st.form_submit_button(texts.TRANSLATE_RUN, key="translate-run", type="primary")
    if submitted and not source.strip():
        st.warning(texts.TYPE_SOMETHING)
    elif submitted:
        st.markdown(f"**{texts.TRANSLATE_OUTPUT}**")
        for line in (line.strip() for line in source.splitlines()):
            if line:
                stream = engine.stream(
                    line, role=choice.role, adapter=choice.adapter, decoding=choice.decoding
                )
                common.show_user_error(st.write_stream, stream)
