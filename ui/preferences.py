"""The preference page's sections: where to start (an adapter, or the base), where the pairs come
from (blind votes, a translator's own mistakes as a detached task, a file), the pairs as the model
will see them, the method and its settings, and the Start. The logic lives in training.data.pairs,
training.evaluation.mistakes, training.data.preview and training.jobs.lifecycle."""

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core import home, texts
from engine import catalogue
from registry import tasks as task_rows
from registry.adapters import Adapter
from serving import tasks
from studio.roles import get_role, list_roles
from training import defaults
from training.config import LOSSES, TrainConfig
from training.data import pairs
from training.data.datasets import save_upload
from training.data.preview import preference_preview
from training.evaluation import mistakes
from training.jobs import lifecycle
from ui import charts, common, team
from ui import training as training_sections


@dataclass(frozen=True)
class StartingPoint:
    parent: Adapter | None  # continued; None: a new LoRA on the base
    base: str  # canonical model id
    role_name: str
    prompt_format: str  # "" : the base's own


@dataclass(frozen=True)
class ChosenPairs:
    records: list[dict]
    title: str
    path: str | None  # None: blind votes, written to a file at Start (as they are then)


def starting_point(db, adapters: list[Adapter], key: str = "pref") -> StartingPoint:
    """An adapter to continue (a link's ?parent= chooses it), or the base model with a role.
    `key` keeps the widgets of each page that asks apart (the reward page asks too)."""
    names = ["", *(a.name for a in adapters)]
    linked = st.query_params.get("parent", "")
    if linked in names and st.session_state.get(f"{key}-followed") != linked:
        st.session_state[f"{key}-parent"] = linked
        st.session_state[f"{key}-followed"] = linked
    chosen = st.selectbox(
        texts.START_FROM, names, format_func=lambda name: name or texts.FROM_BASE, key=f"{key}-parent"
    )
    parent = next((a for a in adapters if a.name == chosen), None)
    if parent is not None:
        st.caption(
            texts.START_FROM_CAPTION.format(
                name=parent.name,
                base=parent.base_model,
                role=parent.role,
                format=parent.prompt_format,
                r=parent.hyperparameters.get("lora_r", "?"),
            )
        )
        return StartingPoint(parent, parent.base_model, parent.role, parent.prompt_format)
    roles = list_roles(db)
    left, right = st.columns(2)
    base = left.selectbox(
        texts.BASE_MODEL,
        list(dict.fromkeys([common.default_base_model(), *catalogue.CATALOGUE])),
        accept_new_options=True,
        format_func=catalogue.model_label,
        key=f"{key}-base",
    )
    role_name = right.selectbox(
        texts.ROLE,
        [r.name for r in roles],
        format_func=lambda n: next(r.label for r in roles if r.name == n),
        key=f"{key}-role",
    )
    return StartingPoint(None, catalogue.parse_model_id(base).model_id, role_name, "")


def data_choice(db, start: StartingPoint) -> ChosenPairs | None:
    source = st.radio(
        texts.PREFERENCE_SOURCE,
        list(texts.PREFERENCE_SOURCES),
        format_func=texts.PREFERENCE_SOURCES.get,
        horizontal=True,
        key="pref-source",
    )
    if source == "votes":
        return _from_votes(db, start)
    if source == "mistakes":
        return _from_mistakes(db, start)
    if source == "sample":
        sample = lifecycle.PREFERENCE_SAMPLES.get(start.role_name, lifecycle.PREFERENCE_SAMPLES["translator"])
        return _from_file(str(sample), None)
    if source == "path":
        typed = st.text_input(texts.DATA_PATH_INPUT, help=texts.DATA_PATH_HELP, key="pref-path").strip()
        return _from_file(str(lifecycle.data_path(typed, home.PROJECT_ROOT)), None) if typed else None
    upload = st.file_uploader(texts.UPLOAD_INPUT, type=["json", "jsonl", "csv"], key="pref-upload")
    if upload is None:
        return None
    saved = common.show_user_error(
        save_upload, upload.name, upload.getvalue(), home.preference_data_dir(), parse=pairs.parse
    )
    return _from_file(str(saved), upload.name) if saved else None


def _from_file(path: str, title: str | None) -> ChosenPairs | None:
    loaded = common.show_user_error(pairs.load, path)
    if loaded is None:
        return None
    return ChosenPairs(loaded.records, title or loaded.name, str(loaded.path))


def _from_votes(db, start: StartingPoint) -> ChosenPairs | None:
    found = pairs.from_votes(db, start.base, start.role_name, asker=team.asker())
    if found.skipped:
        reasons = ", ".join(texts.VOTES_SKIPPED[why].format(count=n) for why, n in found.skipped.items())
        st.caption(texts.VOTES_NOT_USED.format(reasons=reasons))
    if not found.records:
        st.info(texts.ERR_NO_VOTE_PAIRS.format(base=start.base, role=start.role_name))
        return None
    st.caption(
        texts.VOTES_FOUND.format(
            pairs=len(found.records), base=start.base, role=start.role_name, up_to=found.up_to
        )
    )
    return ChosenPairs(found.records, texts.PREFERENCE_SOURCES["votes"], None)


def _from_mistakes(db, start: StartingPoint) -> ChosenPairs | None:
    """The newest mistakes task of the chosen adapter (it survives a closed tab), and a form to run
    one: translate data with references, keep where the output differs."""
    parent = start.parent
    if parent is None:
        st.info(texts.MISTAKES_NEED_PARENT)
        return None
    st.caption(texts.MISTAKES_EXPLAINED.format(name=parent.name))
    sample = lifecycle.SAMPLES.get(parent.role, lifecycle.SAMPLES["translator"])
    left, right = st.columns([3, 1])
    typed = left.text_input(
        texts.MISTAKES_DATA, value=str(sample.relative_to(home.PROJECT_ROOT)), key="pref-mistakes-data"
    )
    limit = right.number_input(texts.MISTAKES_LIMIT, 0, 1_000_000, 0, key="pref-mistakes-limit")
    if st.button(texts.MISTAKES_BUILD, key="pref-mistakes-build"):
        data = str(lifecycle.data_path(typed.strip(), home.PROJECT_ROOT))
        common.show_user_error(mistakes.launch, db, parent.name, data, int(limit) or None, asker=team.asker())
    recent = tasks.list_recent(db, adapter_name=parent.name, kind=mistakes.KIND, limit=1)
    if not recent:
        return None
    task = recent[0]
    if task.status in task_rows.ACTIVE:
        st.fragment(common.task_progress, run_every=1)(task.id, texts.MISTAKES_TASK, "pref-mistakes-stop")
        return None
    if task.status == "succeeded":
        st.success(texts.MISTAKES_DONE.format(**task.result))
        return _from_file(task.result["path"], None)
    if task.error:
        st.error(task.error)
    return None


def settings(start: StartingPoint) -> dict:
    """Method, loss variant and the settings a preference job reads; learning rate and epochs
    default by the base's size (training.defaults), with the reason shown."""
    by_size = defaults.for_base(start.base, preference=True)
    suffix = f"-pref-{start.base}"
    number = training_sections.number
    with st.expander(texts.PREFERENCE_SETTINGS, expanded=True):
        st.caption(by_size.reason())
        columns = st.columns(4)
        method = columns[0].selectbox(
            texts.METHOD, list(texts.METHODS), format_func=texts.METHODS.get, key="pref-method"
        )
        default_loss = TrainConfig(method=method).loss
        loss_type = columns[0].selectbox(
            texts.LOSS_TYPE,
            ["", *(loss for loss in LOSSES[method] if loss != default_loss)],
            format_func=lambda loss: loss or texts.LOSS_DEFAULT.format(loss=default_loss or "–"),
            disabled=not LOSSES[method],
            key=f"pref-loss-{method}",
        )
        chosen = {
            "method": method,
            "loss_type": loss_type,
            "beta": number(columns[0], "beta", step=0.05, key_suffix=suffix),
            "lr": number(columns[1], "lr", format="%.1e", default=by_size.lr, key_suffix=suffix),
            "epochs": number(columns[1], "epochs", step=0.5, default=by_size.epochs, key_suffix=suffix),
            "max_steps": number(columns[1], "max_steps", key_suffix=suffix),
            "batch_size": number(columns[2], "batch_size", key_suffix=suffix),
            "grad_accum": number(columns[2], "grad_accum", key_suffix=suffix),
            "holdout": number(columns[2], "holdout", step=0.05, key_suffix=suffix),
            "max_length": number(columns[3], "max_length", key_suffix=suffix),
            "max_prompt_length": number(columns[3], "max_prompt_length", key_suffix=suffix),
            "save_steps": number(columns[3], "save_steps", key_suffix=suffix),
        }
        if start.parent is None:  # a continued adapter keeps its own LoRA shape
            lora = st.columns(4)
            chosen["lora_r"] = number(lora[0], "lora_r", key_suffix=suffix)
            chosen["lora_alpha"] = number(lora[1], "lora_alpha", key_suffix=suffix)
            chosen["lora_dropout"] = number(lora[2], "lora_dropout", step=0.05, key_suffix=suffix)
    return chosen


def preview_section(db, chosen: ChosenPairs, start: StartingPoint, form: dict) -> None:
    """The first record as the model sees it, what max_length keeps, cuts and drops, the length
    histogram, the first rows, and the export as JSONL."""
    role = get_role(db, start.role_name)
    loading = st.empty()  # the base's first load draws a progress bar; it goes once loaded
    with loading.container():
        tokenizer, base_format = training_sections.tokenizer_for(start.base)
    loading.empty()
    shown = common.show_user_error(
        preference_preview,
        chosen.records,
        tokenizer,
        start.prompt_format or base_format,
        role,
        method=form["method"],
        max_length=form["max_length"],
        max_prompt_length=form["max_prompt_length"],
    )
    if shown is None:
        return
    kind = pairs.PAIRED if shown.pairs.paired else pairs.UNPAIRED
    if form["method"] != "kto" and kind == pairs.UNPAIRED:
        st.error(texts.ERR_METHOD_NEEDS_PAIRS.format(method=form["method"].upper(), name=chosen.title))
    title = texts.PAIRS_PREVIEW.format(
        name=chosen.title, count=len(chosen.records), kind=texts.PAIR_KINDS[kind]
    )
    with st.expander(title, expanded=True):
        tokenized = shown.pairs
        st.caption(
            texts.PAIRS_COUNTS.format(
                kept=len(tokenized.examples),
                tokens=tokenized.num_tokens,
                truncated=tokenized.num_truncated,
                max_length=tokenized.max_length,
                dropped=tokenized.num_dropped,
            )
        )
        st.text(f"{texts.PAIR_PROMPT}:\n{shown.first_prompt}")
        if shown.first_label is None:
            left, right = st.columns(2)
            left.text(f"{texts.PAIR_CHOSEN}:\n{shown.first_chosen}")
            right.text(f"{texts.PAIR_REJECTED}:\n{shown.first_rejected}")
        else:
            verdict = texts.PAIR_DESIRABLE if shown.first_label else texts.PAIR_UNDESIRABLE
            st.text(f"{verdict}:\n{shown.first_chosen}")
        charts.length_histogram(shown.histogram(), height=160)
        st.dataframe(
            [{k: v for k, v in r.items() if k not in ("history",)} for r in shown.records[:20]],
            width="stretch",
        )
        st.download_button(
            texts.PAIRS_DOWNLOAD,
            pairs.to_jsonl(chosen.records),
            file_name=f"{Path(chosen.path or 'votes').stem}.jsonl",
            mime="application/jsonl",
            key="pref-download",
        )


def start_job(db, chosen: ChosenPairs, start: StartingPoint, form: dict, name: str):
    """Check and launch the job; votes are written to a file first, as they are now (the job, its
    lineage and a resume read that file)."""
    path = chosen.path
    if path is None:
        saved, _ = pairs.save_votes(db, start.base, start.role_name, home.preference_data_dir(), team.asker())
        path = str(saved.path)
    return submit_from(db, start, {**form, "data": path, "name": name})


def submit_from(db, start: StartingPoint, settings: dict):
    """Check and launch a job that starts from `start`: the adapter it continues, or the base
    with a role (the preference and reward pages)."""
    settings = dict(settings)
    if start.parent is not None:
        settings["parent"] = start.parent.name
    else:
        settings.update(base=start.base, role=start.role_name)
    return lifecycle.submit_form(
        db,
        settings,
        progress=common.step_progress(),
        tokenizers=training_sections.page_tokenizer,
        asker=team.asker(),
    )
