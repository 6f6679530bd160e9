"""The adapters page's sections: the table of adapters, each card's checkpoints, scores and
evaluation, renaming, role and deletion, the blind-vote standings and the job history."""

import datetime

import streamlit as st

from core import texts
from registry import adapters as adapter_rows
from registry import checkpoints as checkpoint_rows
from registry import tasks as task_rows
from registry.adapters import Adapter
from serving import tasks
from studio import adapters as studio_adapters
from studio import blind, supervisor
from studio.accounts import Asker
from training.evaluation import evaluate
from training.evaluation.scores import head_to_head, rivals, score_table, with_headers
from training.jobs import lifecycle, tracking
from training.trainer import checkpoints
from ui import charts, common


def evaluation_task(db, adapter: Adapter) -> None:
    """The adapter's newest evaluation task: its progress and Stop while it runs (it goes on with
    the tab closed), its error if it failed."""
    recent = tasks.list_recent(db, adapter_name=adapter.name, kind=evaluate.KIND, limit=1)
    if not recent:
        return
    task = recent[0]
    if task.status in task_rows.ACTIVE:
        st.fragment(common.task_progress, run_every=1)(task.id, texts.EVALUATE_TASK, "evaluate-stop")
    elif task.status != "succeeded" and task.error:
        st.error(task.error)


def checkpoint_section(db, adapter: Adapter, asker: Asker) -> None:
    """The job's scored checkpoints, which one this adapter holds and why, and publishing another."""
    scored = checkpoint_rows.for_job(db, adapter.job_id)
    if not scored:
        return
    name = adapter.name
    st.caption(texts.CHECKPOINTS_HEADING)
    if reason := checkpoints.describe_choice(adapter):
        st.caption(reason)
    charts.checkpoint_scores(scored, height=240)
    st.dataframe(checkpoints.table(scored, adapter.metrics.get("checkpoint_step")), hide_index=True)
    others = [row.step for row in scored if row.step != adapter.metrics.get("checkpoint_step")]
    if not others or not asker.owns(adapter.owner_id):
        return
    with st.form(f"checkpoint-{name}"):
        st.caption(texts.CHECKPOINT_PICK)
        step = st.selectbox(texts.CHECKPOINT_STEP, others, key=f"checkpoint-step-{name}")
        new_name = st.text_input(
            texts.CHECKPOINT_NEW_NAME, value=f"{name}-step{others[0]}", key=f"checkpoint-name-{name}"
        )
        if st.form_submit_button(texts.CHECKPOINT_PUBLISH, key=f"checkpoint-publish-{name}"):
            published = common.show_user_error(
                checkpoints.publish_checkpoint,
                db,
                adapter_name=name,
                step=step,
                new_name=new_name,
                asker=asker,
            )
            if published:
                st.toast(texts.CHECKPOINT_PUBLISHED.format(name=published.name, step=step))
                st.rerun()


def logs_section(db, adapter: Adapter) -> None:
    """Where the training job's logs are, and the exact command that opens them."""
    job = lifecycle.get(db, adapter.job_id) if adapter.job_id else None
    if job is None:
        return
    logs = tracking.job_logs(job.job_dir)
    st.caption(texts.CARD_LOGS)
    if logs["tensorboard"]:
        st.caption(texts.CARD_TENSORBOARD.format(folder=logs["tensorboard"]))
        st.code(logs["tensorboard_command"], language="bash")
    else:
        st.caption(texts.CARD_NO_TENSORBOARD.format(install=tracking.TENSORBOARD_INSTALL))
    if logs["mlflow"]:
        st.caption(texts.CARD_MLFLOW.format(run=logs["mlflow"]["run_id"], uri=logs["mlflow"]["uri"]))
        st.code(logs["mlflow_command"], language="bash")
    else:
        st.caption(texts.CARD_NO_MLFLOW.format(install=tracking.MLFLOW_INSTALL))


def lineage_section(db, adapter: Adapter) -> None:
    """The chain base → each training step → this adapter, with each step's data and scores; one
    click compares it with its parent, another preference-tunes it."""
    st.caption(texts.LINEAGE)
    table = studio_adapters.lineage_table(db, adapter)
    column = texts.LINEAGE_COLUMNS
    st.markdown(" → ".join(f"**{row[column['adapter']]}** ({row[column['training']]})" for row in table))
    st.dataframe(table, hide_index=True, width="stretch")
    if quantize := adapter.hyperparameters.get("quantize"):
        st.info(texts.CARD_QUANTISED.format(quantize=texts.QUANTIZE_NAMES.get(quantize, quantize)))
    links = st.columns(2)
    parent = adapter_rows.by_id(db, adapter.parent_id)
    if parent is not None:
        with links[0]:
            st.page_link(
                "pages/chat.py",
                label=texts.COMPARE_WITH_PARENT.format(parent=parent.name),
                query_params={"adapter": adapter.name, "compare": parent.name},
            )
    with links[1]:
        st.page_link(
            "pages/preferences.py", label=texts.PREFERENCE_FROM_HERE, query_params={"parent": adapter.name}
        )


def when(timestamp: float | None) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M") if timestamp else "–"


def adapter_table(rows: list[dict]) -> None:
    column = texts.ADAPTER_COLUMNS
    st.dataframe(
        [
            {
                column["name"]: a.name,
                column["role"]: a.role,
                column["base"]: a.base_model,
                column["dataset"]: f"{a.dataset_name} [{a.dataset_fingerprint}]",
                column["final_loss"]: a.metrics.get("final_loss"),
                column["rank"]: f"{a.hyperparameters.get('lora_r')}/{a.hyperparameters.get('lora_alpha')}",
                column["size"]: round((a.size_bytes or 0) / 1e6, 2),
                column["created"]: when(a.created_at),
                column["folder"]: "✅" if adapter_rows.folder_is_present(a) else "⚠️",
            }
            for a in rows
        ],
        width="stretch",
        hide_index=True,
    )


def scores_section(db, adapter: Adapter, asker: Asker) -> None:
    """Its evaluations against the base (and another adapter), and a form to evaluate again."""
    name = adapter.name
    st.caption(texts.EVALUATIONS)
    table = score_table(db, adapter)
    if table:
        st.dataframe(with_headers(table), hide_index=True)
        st.caption(texts.SCORES_EXPLAINED)
        charts.scores(table)
        others = rivals(db, adapter)
        if others:
            other = st.selectbox(
                texts.COMPARE_ADAPTER, ["", *others], format_func=lambda n: n or "–", key=f"rival-{name}"
            )
            if other:
                st.dataframe(head_to_head(*others[other], name, other), hide_index=True)
    else:
        st.caption(texts.NO_EVALUATIONS)
    if not asker.owns(adapter.owner_id):
        return
    with st.form(f"evaluate-{name}"):
        data_path = st.text_input(texts.EVALUATE_DATA, key=f"eval-data-{name}")
        limit = st.number_input(texts.EVALUATE_LIMIT, 0, 100_000, 20, key=f"eval-limit-{name}")
        if st.form_submit_button(texts.EVALUATE_RUN, key=f"evaluate-run-{name}"):
            common.show_user_error(evaluate.launch, db, name, data_path, int(limit) or None, asker=asker)
    evaluation_task(db, adapter)


def manage_section(db, adapter: Adapter, role_names: list[str], asker: Asker, team: bool) -> None:
    """Rename, change the role, share with the team (team mode), delete: for whoever may change it."""
    name = adapter.name
    if not asker.owns(adapter.owner_id):
        return
    if team:
        shared = st.toggle(texts.SHARE_WITH_TEAM, value=bool(adapter.shared), key=f"share-{name}")
        if shared != bool(adapter.shared) and common.show_user_error(
            studio_adapters.share, db, name, shared, asker
        ):
            st.rerun()
    rename_col, role_col, delete_col = st.columns(3)
    with rename_col:
        new_name = st.text_input(texts.NEW_NAME, value=name, key=f"name-{name}")
        if st.button(texts.RENAME, key=f"rename-{name}"):
            if common.show_user_error(studio_adapters.rename, db, name, new_name, asker):
                st.rerun()
    with role_col:
        current = role_names.index(adapter.role) if adapter.role in role_names else 0
        new_role = st.selectbox(texts.CHANGE_ROLE, role_names, index=current, key=f"role-{name}")
        if st.button(texts.SAVE, key=f"save-role-{name}") and new_role != adapter.role:
            adapter_rows.set_role(db, name, new_role)
            st.rerun()
    with delete_col:
        confirmed = st.checkbox(texts.DELETE_CONFIRM, key=f"confirm-{name}")
        if confirmed:
            for consequence in studio_adapters.deletion_consequences(db, adapter):
                st.warning(consequence)
        if st.button(texts.DELETE, key=f"delete-{name}", disabled=not confirmed, type="primary"):
            if common.show_user_error(studio_adapters.delete, db, name, asker):
                st.rerun()


def votes_table(db, visible: set[str]) -> None:
    """The blind votes' standings between adapters in `visible` (and the base, "")."""
    st.subheader(texts.VOTES_TITLE)
    visible = {"", *visible}
    standings = [row for row in blind.standings(db) if row["first"] in visible and row["second"] in visible]
    if not standings:
        st.caption(texts.NO_VOTES)
    else:
        column = texts.VOTE_COLUMNS
        st.dataframe(
            [
                {
                    column["base"]: row["base_model"],
                    column["first"]: row["first"] or texts.BASE_ONLY,
                    column["second"]: row["second"] or texts.BASE_ONLY,
                    column["votes"]: row["votes"],
                    column["first_wins"]: row["first_wins"],
                    column["second_wins"]: row["second_wins"],
                    column["ties"]: row["ties"],
                    column["rate"]: "–"
                    if row["first_rate"] is None
                    else f"{row['first_rate']:.0%} [{row['low']:.0%}, {row['high']:.0%}]",
                }
                for row in standings
            ],
            width="stretch",
            hide_index=True,
        )


def job_history(db, asker: Asker) -> None:
    st.subheader(texts.JOBS_TITLE)
    jobs = lifecycle.list_recent(db, asker=asker)
    column = texts.JOB_COLUMNS
    st.dataframe(
        [
            {
                column["id"]: j.id,
                column["adapter"]: j.adapter_name,
                column["status"]: texts.STATUS.get(j.status, j.status),
                column["step"]: f"{j.step or 0}/{j.total_steps or '?'}",
                column["loss"]: j.loss,
                column["created"]: when(j.created_at),
                column["error"]: j.error or "",
            }
            for j in jobs
        ],
        width="stretch",
        hide_index=True,
    )
    for job in jobs[:20]:
        with st.expander(f"#{job.id} {job.adapter_name} · {texts.STATUS.get(job.status, job.status)}"):
            st.code(supervisor.log_tail(job, lines=60) or "…", language="log")
