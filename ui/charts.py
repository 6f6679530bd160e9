"""The studio's one way to draw a chart: Streamlit's native charts (Altair, which Streamlit draws
them with, where an axis must be logarithmic), axes named in the chosen language.

The data comes shaped from plain modules (training.data.preview, training.evaluation.scores,
registry.jobs); this file only names the axes and draws."""

import streamlit as st

from core import texts
from training.evaluation.scores import score_chart_rows
from training.trainer.checkpoints import chart_rows as checkpoint_chart_rows


def loss_curve(metrics: list[dict], height: int = 180) -> None:
    points = [{"step": row["step"], "loss": row["loss"]} for row in metrics if row.get("loss") is not None]
    if not points:
        return
    st.caption(texts.LOSS_CURVE)
    st.line_chart(points, x="step", y="loss", x_label=texts.STEP_AXIS, y_label=texts.LOSS_AXIS, height=height)


def rewards(metrics: list[dict], height: int = 180) -> None:
    """A preference job's implicit rewards per logged step (TRL's rewards/chosen, /rejected, /margins)."""
    series = texts.REWARD_SERIES
    points = [
        {"step": row["step"], **{series[key]: row["extra"][key] for key in series if key in row["extra"]}}
        for row in metrics
        if any(key in row.get("extra", {}) for key in series)
    ]
    if not points:
        return
    st.caption(texts.REWARD_CHART)
    shown = [name for name in series.values() if any(name in point for point in points)]
    st.line_chart(
        points, x="step", y=shown, x_label=texts.STEP_AXIS, y_label=texts.REWARD_AXIS, height=height
    )


def reward_terms(metrics: list[dict], height: int = 200) -> None:
    """A GRPO job's rewards per logged step: each reward's mean (TRL's rewards/<name>/mean) and the
    weighted total."""
    names = reward_names(metrics)
    if not names:
        return
    labels = {name: texts.REWARD_NAMES.get(name, name) for name in names}
    points = []
    for row in metrics:
        extra = row.get("extra", {})
        point = {
            labels[name]: extra[f"rewards/{name}/mean"] for name in names if f"rewards/{name}/mean" in extra
        }
        if "reward" in extra:
            point[texts.REWARD_TOTAL] = extra["reward"]
        if point:
            points.append({"step": row["step"], **point})
    st.caption(texts.REWARD_TERMS_CHART)
    shown = [*labels.values(), texts.REWARD_TOTAL]
    st.line_chart(
        points,
        x="step",
        y=[name for name in shown if any(name in point for point in points)],
        x_label=texts.STEP_AXIS,
        y_label=texts.REWARD_AXIS,
        height=height,
    )


def reward_names(metrics: list[dict]) -> list[str]:
    """The rewards a GRPO job logged, in the order it first logged them."""
    found: dict[str, None] = {}
    for row in metrics:
        for key in row.get("extra", {}):
            if key.startswith("rewards/") and key.endswith("/mean"):
                found[key.removeprefix("rewards/").removesuffix("/mean")] = None
    return list(found)


def samples(metrics: list[dict]) -> None:
    """The latest logged step's completions with each reward and the advantage, as TRL logs them."""
    latest = next((row for row in reversed(metrics) if row.get("extra", {}).get("samples")), None)
    if latest is None:
        return
    columns = texts.SAMPLE_COLUMNS
    rows = [
        {
            columns["prompt"]: sample["prompt"][-80:],
            columns["completion"]: sample["completion"],
            **{texts.REWARD_NAMES.get(name, name): value for name, value in sample["rewards"].items()},
            columns["advantage"]: sample.get("advantage"),
        }
        for sample in latest["extra"]["samples"]
    ]
    st.caption(f"{texts.SAMPLES_TITLE} · {texts.STEP_AXIS} {latest['step']}")
    st.table(rows)  # a few rows of text, read whole


def length_histogram(counts: dict[str, int], height: int = 160) -> None:
    st.caption(texts.LENGTHS)
    rows = [{"range": label, "count": count} for label, count in counts.items()]
    st.bar_chart(
        rows,
        x="range",
        y="count",
        x_label=texts.LENGTH_AXIS,
        y_label=texts.COUNT_AXIS,
        height=height,
        sort=False,
    )


def scores(table: list[dict], height: int = 200) -> None:
    """Adapter against base, one bar pair per metric, for the newest evaluation of each dataset."""
    metric, adapter, base = (texts.SCORE_COLUMNS[key] for key in ("metric", "adapter", "base"))
    rows = score_chart_rows(table, metric=metric, adapter=adapter, base=base)
    if not rows:
        return
    st.caption(texts.SCORE_CHART)
    # Horizontal: "bleu · dataset" labels read across. The legend names the bars by their columns.
    st.bar_chart(
        rows,
        x=metric,
        y=[adapter, base],
        stack=False,
        horizontal=True,
        x_label=metric,
        y_label=texts.SCORE_AXIS,
        height=height,
    )


def checkpoint_scores(rows: list, height: int = 240) -> None:
    """Each scored checkpoint's held-out score, step on x (training/trainer/checkpoints.py)."""
    points, metrics = checkpoint_chart_rows(rows)
    if not points:
        return
    st.caption(texts.CHECKPOINT_CHART)
    st.line_chart(
        points, x="step", y=metrics, x_label=texts.STEP_AXIS, y_label=texts.SCORE_AXIS, height=height
    )


def sweep(points: list, height: int = 220) -> None:
    """A learning-rate sweep's held-out score against the rate, the rate on a log axis."""
    import altair as alt

    if not points:
        return
    metric = "bleu" if points[0].kind == "translation" else "loss"
    rows = [{"lr": point.lr, metric: point.scores[metric]} for point in points]
    st.caption(texts.SWEEP_CHART.format(metric=metric))
    chart = (
        alt.Chart(alt.Data(values=rows))
        .mark_line(point=True)
        .encode(
            x=alt.X("lr:Q", scale=alt.Scale(type="log"), title=texts.LR_AXIS),
            y=alt.Y(f"{metric}:Q", title=metric),
        )
        .properties(height=height)
    )
    st.altair_chart(chart, width="stretch")
