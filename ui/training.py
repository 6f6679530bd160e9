"""The training page's sections: the base's tokenizer (loaded once per process), the data source,
the hyperparameters with the trainer's own limits, the preview of what the model will see, the
devices and launch commands, and the live panel of a job."""

import os
import sqlite3
from pathlib import Path

import streamlit as st

from core import home, texts
from core.errors import UserError
from engine import catalogue, devices, loading, models, resident
from registry import checkpoints as checkpoint_rows
from registry import jobs as job_rows
from registry import sweeps as sweep_rows
from studio import slurm, supervisor
from studio.roles import get_role
from training import defaults
from training.config import QUANTIZE_CHOICES, TrainConfig, rule
from training.data.datasets import load_dataset, save_upload
from training.data.preview import preview
from training.jobs import lifecycle, sweep, tracking
from training.jobs.panel import job_view, timer_is_stale
from training.parallel import launchers, memory
from ui import charts, common, team

TOKENIZERS = resident.Resident(max_entries=4)


def tokenizer_for(base_model: str):
    """The base's tokenizer and default prompt format, loaded once per process for every session."""

    def load(progress):
        spec = catalogue.parse_model_id(base_model)
        model_dir = models.resolve_model_dir(spec, progress=progress)
        tokenizer = loading.load_tokenizer(model_dir, spec)
        return tokenizer, loading.default_prompt_format(spec, model_dir, tokenizer)

    return TOKENIZERS.get(base_model, load, show_progress=common.model_progress)


def page_tokenizer(model_id: str):
    """What a Start on this page tokenises with: the tokenizer the page already holds."""
    return tokenizer_for(model_id)[0]


@st.cache_data(show_spinner=False, max_entries=8)
def dataset_for_preview(path: str, limit: int, stamp: tuple):
    """Read once per file version: reruns of the form do not read the dataset again."""
    return load_dataset(path, limit=limit or None)


def file_stamp(path: str) -> tuple:
    try:
        stat = Path(path).stat()
    except OSError:
        return ()
    return (stat.st_mtime_ns, stat.st_size)


def number(column, name: str, step=None, format=None, default=None, key_suffix: str = ""):
    """A form field whose limits are the trainer's own (training.config), default included unless
    given (learning rate and epochs follow the base model: their keys name it, so choosing another
    base shows that base's defaults)."""
    limits = rule(name)
    default = getattr(TrainConfig(), name) if default is None else default
    kind = type(getattr(TrainConfig(), name))
    low = min(limits.also + (limits.low,)) if limits.also else limits.low
    return column.number_input(
        texts.SETTING_LABELS[name],
        kind(low),
        kind(limits.high),
        kind(default),
        step=step,
        format=format,
        key=f"setting-{name}{key_suffix}",
    )


def job_panel(job_id: int, started_as: str) -> None:
    db = common.registry()
    job = lifecycle.get(db, job_id, team.asker())
    if job is None:
        return
    if timer_is_stale(job, started_as):
        st.rerun(scope="app")  # redraw the panel with a timer while the job is active, without one after
    view = job_view(job)
    st.subheader(view.heading + (f" · {view.devices}" if view.devices else ""))
    if view.cluster:
        st.caption(view.cluster)
    if view.waiting_for:
        st.info(texts.WAITING.format(reason=view.waiting_for))
    st.progress(view.fraction, text=view.progress)
    for column, label, value in zip(
        st.columns(4),
        (texts.METRIC_LOSS, texts.METRIC_SPEED, texts.METRIC_ETA, texts.METRIC_LR),
        (view.loss, view.speed, view.eta, view.learning_rate),
        strict=True,
    ):
        column.metric(label, value)
    metrics = job_rows.metrics_for(db, job_id)
    charts.loss_curve(metrics, height=180)
    charts.rewards(metrics, height=180)
    charts.reward_terms(metrics, height=200)
    charts.samples(metrics)
    charts.checkpoint_scores(checkpoint_rows.for_job(db, job_id), height=240)
    if job.config.get("lr_sweep"):
        _sweep_result(db, job)
    if view.failed_with:
        st.error(view.failed_with)
    if view.succeeded and not job.config.get("lr_sweep"):
        st.success(texts.ADAPTER_READY.format(name=job.adapter_name))
        st.page_link("pages/chat.py", label=texts.GO_CHAT, query_params={"adapter": job.adapter_name})
        if parent := job.config.get("parent"):
            st.page_link(
                "pages/chat.py",
                label=texts.COMPARE_WITH_PARENT.format(parent=parent),
                query_params={"adapter": job.adapter_name, "compare": parent},
            )
    buttons = st.columns(2)
    if view.active and buttons[0].button(texts.CANCEL, key=f"cancel-{job_id}"):
        common.show_user_error(lifecycle.cancel, db, job_id, team.asker())
    if view.resumable:
        buttons[1].button(texts.RESUME, key=f"resume-{job_id}", on_click=_resume, args=(job_id, {}))
    if view.resumable and job.remedy:  # e.g. out of memory: the smaller micro-batch it named
        changes = ", ".join(f"{key.replace('_', '-')} {value}" for key, value in job.remedy.items())
        buttons[1].button(
            texts.RESUME_WITH.format(changes=changes),
            key=f"resume-remedy-{job_id}",
            on_click=_resume,
            args=(job_id, job.remedy),
        )
    if refused := st.session_state.pop(f"resume-refused-{job_id}", None):
        st.error(refused)
    with st.expander(texts.LOG_TAIL, expanded=job.status == "failed"):
        st.code(supervisor.log_tail(job) or "…", language="log")
    for rank, path in lifecycle.rank_logs(job):
        with st.expander(texts.RANK_LOG.format(rank=rank)):
            st.code(supervisor.log_tail(job, path=path) or "…", language="log")


def _resume(job_id: int, changes: dict) -> None:
    """A Resume button's callback (it runs before the panel is drawn again, which then shows the
    job queued, with its timer); a refusal is shown in the panel."""
    try:
        lifecycle.resume(
            common.registry(), job_id, changes=changes, tokenizers=page_tokenizer, asker=team.asker()
        )
    except UserError as error:
        st.session_state[f"resume-refused-{job_id}"] = str(error)
    except sqlite3.OperationalError as error:
        st.session_state[f"resume-refused-{job_id}"] = texts.ERR_REGISTRY_WRITE.format(error=error)


def _sweep_result(db, job) -> None:
    """The sweep's points so far as a chart and a table, and the best rate, which one click puts
    into the learning-rate field of the form (for the base the sweep ran on)."""
    points = sweep_rows.for_job(db, job.id)
    charts.sweep(points)
    if not points:
        return
    st.dataframe(
        [
            {"lr": p.lr, **p.scores, texts.SWEEP_TRAIN_LOSS: p.train_loss, texts.SWEEP_STEPS: p.steps}
            for p in points
        ],
        width="stretch",
    )
    chosen = sweep.best(points)
    planned = sweep.rates(job.config["lr_sweep"])
    st.caption(texts.SWEEP_BEST.format(lr=f"{chosen.lr:g}", done=len(points), total=len(planned)))

    def use_best() -> None:  # a callback: it runs before the form's widgets are drawn again
        shown = st.session_state.get("train-base") or job.base_model
        if catalogue.parse_model_id(shown).model_id == catalogue.parse_model_id(job.base_model).model_id:
            st.session_state[f"setting-lr-{shown}"] = chosen.lr
        st.session_state[f"setting-lr-{job.base_model}"] = chosen.lr

    st.button(
        texts.SWEEP_USE.format(lr=f"{chosen.lr:g}"),
        key=f"sweep-use-{job.id}",
        on_click=use_best,
        type="primary",
    )


def data_choice(role_name: str, key: str = "train") -> tuple[str | None, str | None, str]:
    """Where the data comes from (a sample, a path, an upload): its path, the title to show, and
    what to say when there is none yet. `key` keeps each page's widgets apart."""
    source = st.radio(
        texts.DATA_SOURCE,
        list(texts.DATA_SOURCES),
        format_func=texts.DATA_SOURCES.get,
        horizontal=True,
        key=f"{key}-source",
    )
    data_path, data_title, data_problem = None, None, texts.CHOOSE_DATA
    if source == "sample":
        sample = st.selectbox(
            texts.DATA_SOURCES["sample"],
            list(lifecycle.SAMPLES),
            index=list(lifecycle.SAMPLES).index(role_name) if role_name in lifecycle.SAMPLES else 0,
            format_func=lambda key: lifecycle.SAMPLES[key].name,
            key=f"{key}-sample",
        )
        data_path = str(lifecycle.SAMPLES[sample])
    elif source == "path":
        typed = st.text_input(texts.DATA_PATH_INPUT, help=texts.DATA_PATH_HELP, key=f"{key}-path").strip()
        data_path = str(lifecycle.data_path(typed, home.PROJECT_ROOT)) if typed else None
    else:
        upload = st.file_uploader(texts.UPLOAD_INPUT, type=["json", "jsonl", "csv"], key=f"{key}-upload")
        if upload is not None:
            saved = common.show_user_error(
                save_upload, upload.name, upload.getvalue(), home.home() / "uploads"
            )
            data_path, data_title = (str(saved), upload.name) if saved else (None, None)
            data_problem = texts.UPLOAD_REJECTED if saved is None else data_problem
    return data_path, data_title, data_problem


def hyperparameters(base_model: str) -> dict:
    """The settings form; learning rate and epochs default to what the base's size suggests."""
    by_size = defaults.for_base(base_model)
    with st.expander(texts.HYPERPARAMETERS):
        st.caption(by_size.reason())
        columns = st.columns(4)
        settings = {
            "epochs": number(
                columns[0], "epochs", step=0.5, default=by_size.epochs, key_suffix=f"-{base_model}"
            ),
            "max_steps": number(columns[0], "max_steps"),
            "limit": number(columns[0], "limit"),
            "lr": number(columns[1], "lr", format="%.1e", default=by_size.lr, key_suffix=f"-{base_model}"),
            "batch_size": number(columns[1], "batch_size"),
            "grad_accum": number(columns[1], "grad_accum"),
            "lora_r": number(columns[2], "lora_r"),
            "lora_alpha": number(columns[2], "lora_alpha"),
            "lora_dropout": number(columns[2], "lora_dropout", step=0.05),
            "max_length": number(columns[3], "max_length"),
            "save_steps": number(columns[3], "save_steps"),
        }
    return settings


def data_preview(db, data_path: str, data_title: str | None, role_name: str, base_model: str, settings: dict):
    """The first records and the first example as the model will see it, with the length histogram;
    the preview (None when the data cannot be read)."""
    try:
        dataset = dataset_for_preview(data_path, settings["limit"], file_stamp(data_path))
        role = get_role(db, role_name)
        loading = st.empty()
        with loading.container():
            tokenizer, prompt_format = tokenizer_for(catalogue.parse_model_id(base_model).model_id)
        loading.empty()
        shown = preview(dataset, tokenizer, prompt_format, role, settings["max_length"])
        title = data_title or dataset.name
        with st.expander(
            f"{texts.PREVIEW} · {title} · {dataset.total_records} · {prompt_format}", expanded=True
        ):
            st.dataframe(dataset.records[:5], width="stretch")
            st.caption(texts.FIRST_EXAMPLE)
            st.text(f"{texts.PROMPT_PART}:\n{shown.first_prompt}")
            st.text(f"{texts.TARGET_PART}:\n{shown.first_target}")
            charts.length_histogram(shown.histogram(), height=160)
            if shown.num_truncated:
                st.warning(texts.TRUNCATED.format(count=shown.num_truncated, max_length=shown.max_length))
        return shown
    except UserError as error:
        st.error(str(error))
        return None


def memory_section(base_model: str, shown, form: dict) -> None:
    """The memory estimate for the form against what is free now, the trainer's choice of gradient
    checkpointing and micro-batch with why, and the switches that override it (written into `form`)."""
    device = "cuda" if devices.gpu_ids() else "cpu"
    # the model is fetched or converted behind the preview's progress bar, never here
    model_dir = models.present_model_dir(catalogue.parse_model_id(base_model))
    if model_dir is None:
        return
    dtype_bytes = loading.parse_dtype("auto", device).itemsize
    with st.expander(texts.MEMORY):
        choice = _memory_choice(model_dir, shown, form, device, dtype_bytes)
    if choice is not None and choice.verdict != "fits":  # seen without opening the section
        {"tight": st.warning, "too_big": st.error}[choice.verdict](choice.reason)


def _memory_choice(model_dir, shown, form: dict, device: str, dtype_bytes: int):
    switches = st.columns(3)
    form["gradient_checkpointing"] = switches[0].selectbox(
        texts.SETTING_LABELS["gradient_checkpointing"],
        ["auto", "on", "off"],
        format_func=texts.SWITCH_NAMES.get,
        key="setting-gradient_checkpointing",
    )
    form["micro_batch"] = number(switches[1], "micro_batch")
    form["quantize"] = switches[2].selectbox(
        texts.SETTING_LABELS["quantize"],
        list(QUANTIZE_CHOICES),
        format_func=texts.QUANTIZE_NAMES.get,
        key="setting-quantize",
    )
    longest, most_targets = shown.longest_trained()
    choice = common.show_user_error(
        memory.for_form, model_dir, longest, most_targets, form, device, dtype_bytes
    )
    if choice is not None:
        show = {"fits": st.success, "tight": st.warning, "too_big": st.error}[choice.verdict]
        show(choice.reason)
        st.caption(texts.MEMORY_PARTS_CAPTION.format(parts=choice.estimate.describe(), longest=longest))
    return choice


def tracking_section(form: dict) -> None:
    """Where the job's metrics go besides the registry: TensorBoard files, and MLflow when named."""
    with st.expander(texts.TRACKING):
        if tracking.tensorboard_installed():
            st.caption(texts.TENSORBOARD_ON)
        else:
            st.caption(texts.TENSORBOARD_OFF.format(install=tracking.TENSORBOARD_INSTALL))
        form["mlflow_uri"] = st.text_input(
            texts.SETTING_LABELS["mlflow_uri"], key="setting-mlflow_uri", help=texts.MLFLOW_URI_HELP
        )


def where_section(form: dict) -> None:
    """This machine or a Slurm cluster, with the cluster's settings (written into `form`)."""
    where = st.segmented_control(
        texts.WHERE_RUNS,
        list(texts.WHERE_CHOICES),
        format_func=texts.WHERE_CHOICES.get,
        default="",
        key="train-where",
    )
    if where != "slurm":
        return
    if not slurm.available():
        st.warning(texts.SLURM_NOT_HERE)
    form["cluster"] = "slurm"
    left, middle, right = st.columns(3)
    form["partition"] = left.text_input(texts.SLURM_PARTITION, key="setting-partition").strip()
    form["nodes"] = middle.number_input(texts.SLURM_NODES, 1, 64, 1, key="setting-nodes")
    form["gpus_per_node"] = right.number_input(texts.SLURM_GPUS, 0, 16, 0, key="setting-gpus-per-node")
    left, right = st.columns(2)
    form["time_limit"] = left.text_input(texts.SLURM_TIME, key="setting-time-limit").strip()
    form["slurm_account"] = right.text_input(texts.SLURM_ACCOUNT, key="setting-slurm-account").strip()
    form["requeue"] = st.checkbox(texts.SLURM_REQUEUE, key="setting-requeue")


def devices_section(form: dict) -> None:
    """Processes, strategy and nodes (written into `form`), with the batch sizes and launch commands."""
    with st.expander(texts.DEVICES):
        gpus = devices.gpu_names()
        st.caption(texts.GPUS_FOUND.format(names=", ".join(gpus)) if gpus else texts.NO_GPU_FOUND)
        columns = st.columns(3)
        form["processes"] = columns[0].number_input(
            texts.PROCESSES_GPUS if gpus else texts.PROCESSES_CPU,
            1,
            max(len(gpus) if gpus else os.cpu_count() or 1, 1),
            1,
            key="setting-processes",
        )
        form["strategy"] = columns[1].selectbox(
            texts.STRATEGY, list(texts.STRATEGIES), format_func=texts.STRATEGIES.get, key="setting-strategy"
        )
        nodes = columns[2].number_input(texts.NODES, 1, 1024, 1, key="train-nodes")
        host = st.text_input(texts.NODE_HOST, "127.0.0.1", key="train-host") if nodes > 1 else "127.0.0.1"
        launch = common.show_user_error(launchers.preview, form, nodes, host)
        if launch:
            st.caption(
                texts.BATCH_SIZES.format(
                    per_device=launch.per_device, total=launch.total, processes=launch.world_size
                )
            )
            if nodes == 1:
                st.caption(texts.LAUNCH_COMMAND)
                st.code(launch.command, language="bash", wrap_lines=True)
            else:
                st.info(texts.NODE_COMMANDS)
                for node, command in enumerate(launch.node_commands):
                    st.caption(texts.NODE_COMMAND.format(node=node))
                    st.code(command, language="bash", wrap_lines=True)
                st.caption(texts.SLURM_SCRIPT)
                st.code(launch.sbatch, language="bash")
                st.caption(texts.SQLITE_LOCAL)
        network = launchers.on_network_filesystem(home.home())
        if network:
            st.warning(texts.SQLITE_ON_NETWORK.format(path=home.home(), kind=network))
