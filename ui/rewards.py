"""The reward page's sections: the prompts with their references, the rewards and their weights
(a judge among them), the GRPO settings with their defaults and why, and the Start. The logic lives
in training.evaluation.rewards and training.jobs.lifecycle."""

import streamlit as st

from core import texts
from engine import devices
from training import defaults
from training.config import TrainConfig
from training.evaluation import rewards
from ui import preferences as preference_sections
from ui import training as training_sections
from ui.preferences import StartingPoint

DEFAULT_STEPS, DEFAULT_PROMPTS = 30, 2


def reward_weights(start: StartingPoint, metric: str) -> dict:
    """Each reward's weight (0: not used), the role's defaults first; the judge's endpoint when weighed."""
    defaults_ = rewards.default_weights(metric)
    names = rewards.TRANSLATION if metric == "translation" else rewards.RULES
    with st.expander(texts.REWARDS_SECTION, expanded=True):
        st.caption(texts.REWARDS_CAPTION)
        columns = st.columns(len(names))
        weights = {
            name: column.number_input(
                texts.REWARD_NAMES[name],
                min_value=0.0,
                max_value=100.0,
                value=defaults_.get(name, 0.0),
                step=0.1,
                key=f"grpo-weight-{metric}-{name}",
            )
            for column, name in zip(columns, names, strict=True)
        }
        settings = {}
        if metric != "translation":
            settings["length_range"] = st.text_input(
                texts.REWARD_NAMES["length_range"], value="2:400", key="grpo-length-range"
            )
        with st.container(border=True):
            st.markdown(f"**{texts.JUDGE_SECTION}**")
            st.caption(texts.JUDGE_CAPTION)
            left, middle, right = st.columns([1, 2, 2])
            weights[rewards.JUDGE] = left.number_input(
                texts.REWARD_NAMES["judge"],
                min_value=0.0,
                max_value=100.0,
                value=0.0,
                step=0.1,
                key="grpo-judge",
            )
            settings["judge_url"] = middle.text_input(texts.JUDGE_URL, placeholder="http://127.0.0.1:8000/v1")
            settings["judge_model"] = right.text_input(texts.JUDGE_MODEL)
            settings["judge_prompt"] = st.text_area(
                texts.JUDGE_PROMPT_LABEL, value=rewards.JUDGE_PROMPT, height=140
            )
    kept = {name: weight for name, weight in weights.items() if weight}
    return {"rewards": rewards.describe(kept) if kept else "", **settings}


def settings(start: StartingPoint) -> dict:
    """GRPO's settings, defaulting by the base's size and the device, with the reason shown."""
    by_size = defaults.for_base(start.base, preference=True)
    device = (devices.gpu_names() or ["CPU"])[0]
    suffix = f"-grpo-{start.base}"
    number = training_sections.number
    with st.expander(texts.GRPO_SETTINGS, expanded=True):
        st.caption(
            texts.GRPO_DEFAULTS.format(
                size=_size(by_size.parameters),
                generations=TrainConfig().generations,
                device=device,
                lr=by_size.lr,
                steps=DEFAULT_STEPS,
                prompts=DEFAULT_PROMPTS,
            )
        )
        columns = st.columns(4)
        chosen = {
            "method": "grpo",
            "generations": number(columns[0], "generations", key_suffix=suffix),
            "completion_length": number(columns[0], "completion_length", key_suffix=suffix),
            "kl": number(columns[1], "kl", step=0.01, key_suffix=suffix),
            "sampling_temperature": number(columns[1], "sampling_temperature", step=0.1, key_suffix=suffix),
            "lr": number(columns[2], "lr", format="%.1e", default=by_size.lr, key_suffix=suffix),
            "max_steps": number(columns[2], "max_steps", default=DEFAULT_STEPS, key_suffix=suffix),
            "batch_size": number(columns[3], "batch_size", default=DEFAULT_PROMPTS, key_suffix=suffix),
            "grad_accum": number(columns[3], "grad_accum", default=1, key_suffix=suffix),
            "holdout": number(columns[3], "holdout", step=0.05, key_suffix=suffix),
            "save_steps": number(columns[2], "save_steps", default=10, key_suffix=suffix),
        }
    return chosen


def _size(parameters: float | None) -> str:
    return f"{parameters / 1e9:.2f}B" if parameters else "?"


def start_job(db, start: StartingPoint, data_path: str, form: dict, name: str):
    return preference_sections.submit_from(db, start, {**form, "data": data_path, "name": name})
