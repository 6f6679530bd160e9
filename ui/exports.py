"""The Export section of an adapter card: merge, GGUF, Ollama, vLLM, push, API server. Long actions
run as detached tasks (serving.tasks) and are followed here; the logic lives in exporters.requests."""

import streamlit as st

from core import texts
from exporters import gguf, hub, merge, requests, vllm
from registry import adapters as adapter_rows
from registry import tasks as task_rows
from registry.adapters import Adapter
from serving import server, tasks
from ui import common, team


def export_section(db, adapter: Adapter) -> None:
    """Merge, GGUF, Ollama, vLLM, push and serve (the page shows it to whoever may change it)."""
    name = adapter.name
    st.caption(texts.EXPORT_HEADING)
    tab = dict(zip(texts.EXPORT_TABS, st.tabs(list(texts.EXPORT_TABS.values())), strict=True))
    with tab["merge"]:
        _merge_form(db, name)
    with tab["gguf"]:
        _gguf_form(db, name)
    with tab["ollama"]:
        _ollama(db, name)
    with tab["vllm"]:
        _vllm(db, adapter)
    with tab["push"]:
        _push_form(db, name)
    with tab["api"]:
        _api_server(db, adapter)
    followed = requests.for_adapter(db, name)
    if followed:
        active = any(task.status in task_rows.ACTIVE for task in followed)
        st.fragment(_task_list, run_every=2 if active else None)(name)


def _launch(db, name: str, kind: str, **settings) -> None:
    task = common.show_user_error(requests.start, db, name, kind, team.asker(), **settings)
    if task:
        st.toast(texts.EXPORT_STARTED.format(kind=texts.EXPORT_KINDS[kind], id=task.id))
        st.rerun()


def _merge_form(db, name: str) -> None:
    with st.form(f"export-merge-{name}", border=False):
        st.caption(texts.EXPORT_MERGE_HELP)
        dtype = st.segmented_control(
            texts.EXPORT_DTYPE, merge.DTYPES, default="fp32", required=True, key=f"merge-dtype-{name}"
        )
        out = st.text_input(texts.EXPORT_OUTPUT, key=f"merge-out-{name}")
        if st.form_submit_button(texts.EXPORT_START, key=f"merge-start-{name}"):
            _launch(db, name, "merge", dtype=dtype, out=out.strip())


def _gguf_form(db, name: str) -> None:
    if not requests.converters_ready():
        st.warning(texts.EXPORT_NO_CONVERTERS)
        return
    with st.form(f"export-gguf-{name}", border=False):
        st.caption(texts.EXPORT_GGUF_HELP)
        kind = st.radio(
            texts.EXPORT_GGUF_WHAT,
            list(texts.EXPORT_GGUF_WHATS),
            format_func=texts.EXPORT_GGUF_WHATS.get,
            horizontal=True,
            key=f"gguf-what-{name}",
        )
        outtype = st.segmented_control(
            texts.EXPORT_GGUF_TYPE, gguf.TYPES, default="f16", required=True, key=f"gguf-type-{name}"
        )
        out = st.text_input(texts.EXPORT_OUTPUT, key=f"gguf-out-{name}")
        if st.form_submit_button(texts.EXPORT_START, key=f"gguf-start-{name}"):
            _launch(db, name, kind, type=outtype, out=out.strip())


def _ollama(db, name: str) -> None:
    made = requests.modelfiles(db, name)
    if not made:
        st.caption(texts.EXPORT_OLLAMA_NONE)
        return
    st.caption(texts.EXPORT_OLLAMA_HELP)
    for modelfile in made:
        st.code(requests.ollama_command(name, modelfile), language="bash")


def _vllm(db, adapter: Adapter) -> None:
    st.caption(texts.EXPORT_VLLM_HELP)
    verdict = common.show_user_error(vllm.verdict, adapter)
    if verdict is None:
        return
    if not verdict.servable:
        st.warning("\n\n".join([texts.EXPORT_VLLM_REFUSED, *verdict.problems]))
        return
    st.code(common.show_user_error(vllm.command, [adapter]) or "", language="bash", wrap_lines=True)
    siblings = [a for a in adapter_rows.list_all(db) if a.base_model == adapter.base_model]
    servable = [a for a in siblings if vllm.verdict(a).servable]
    if len(servable) > 1:
        st.caption(texts.EXPORT_VLLM_ALL)
        st.code(common.show_user_error(vllm.command, servable) or "", language="bash", wrap_lines=True)


def _push_form(db, name: str) -> None:
    st.caption(texts.EXPORT_PUSH_HELP.format(variables=", ".join(hub.TOKEN_VARIABLES.values())))
    with st.form(f"export-push-{name}", border=False):
        where = st.segmented_control(
            texts.EXPORT_PUSH_HUB, hub.HUBS, default="huggingface", required=True, key=f"push-hub-{name}"
        )
        repo = st.text_input(texts.EXPORT_PUSH_REPO, placeholder=f"you/{name}", key=f"push-repo-{name}")
        merged = st.checkbox(texts.EXPORT_PUSH_MERGED, key=f"push-merged-{name}")
        public = st.checkbox(texts.EXPORT_PUSH_PUBLIC, key=f"push-public-{name}")
        if st.form_submit_button(texts.EXPORT_PUSH_RUN, key=f"push-start-{name}"):
            _launch(db, name, "push", hub=where, repo=repo.strip(), merged=merged, private=not public)


def _api_server(db, adapter: Adapter) -> None:
    st.caption(texts.EXPORT_API_HELP)
    running = requests.server_for(db, adapter.base_model)
    if running is None:
        with st.form(f"export-api-{adapter.name}", border=False):
            port = st.number_input(
                texts.EXPORT_API_PORT, 1024, 65535, server.DEFAULT_PORT, key=f"api-port-{adapter.name}"
            )
            if st.form_submit_button(texts.EXPORT_API_START, key=f"api-start-{adapter.name}"):
                if common.show_user_error(server.start, db, base=adapter.base_model, port=int(port)):
                    st.rerun()
        return
    url = running.result.get("url") or server.url(running.settings["host"], running.settings["port"])
    status = texts.TASK_STATUS.get(running.status, running.status)
    st.markdown(texts.EXPORT_API_RUNNING.format(status=status, url=url, base=adapter.base_model))
    st.code(requests.api_snippet(url, adapter.name), language="python")
    if st.button(texts.EXPORT_STOP, key=f"api-stop-{adapter.name}-{running.id}"):
        tasks.stop(db, running.id)
        st.rerun()


def _task_list(name: str) -> None:
    db = common.registry()
    for task in requests.for_adapter(db, name):
        if task.kind == "server":
            continue
        line = st.columns([5, 1])
        line[0].markdown(requests.describe(task))
        if task.status in task_rows.ACTIVE:
            if line[1].button(texts.EXPORT_STOP, key=f"task-stop-{task.id}"):
                tasks.stop(db, task.id)
                st.rerun()
            st.code(tasks.log_tail(task, lines=4) or "…", language="log")
        elif task.status == "succeeded":
            result = task.result
            st.code(
                "\n".join(
                    value
                    for value in (result.get("path"), result.get("modelfile"), result.get("url"))
                    if value
                )
            )
            if result.get("note"):  # a message by code; a plain sentence from before the codes
                st.info(str(texts.Message.from_json(result["note"]) or result["note"]))
        elif task.error:
            st.error(task.error)
