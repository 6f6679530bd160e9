"""Evaluation rows as a person reads them: the adapter's score, its base's, the gain, and whether
the gain is more than chance (paired bootstrap, training/evaluation/significance.py)."""

import functools
from pathlib import Path

from core import texts
from core.errors import UserError
from registry import evaluations as evaluation_rows
from registry.adapters import Adapter
from registry.evaluations import Evaluation
from training.evaluation.significance import compare_prediction_files

HEADLINE = {"translation": ("bleu", "chrf"), "loss": ("loss", "perplexity")}
METRICS = tuple(metric for metrics in HEADLINE.values() for metric in metrics)


def score_table(db, adapter: Adapter) -> list[dict]:
    """One line per evaluation: scores, the base's on the same examples and the gain; for translators
    also each score's 95% interval (±), the p-value of the gain and whether it is significant."""
    table = []
    for row in evaluation_rows.for_adapter(db, adapter.id):
        base = evaluation_rows.base_counterpart(db, row)
        line = {"dataset": f"{row.dataset_name} [{row.dataset_fingerprint}]", "n": row.num_examples}
        tested = _paired(row, base) if row.kind == "translation" and base is not None else {}
        for metric in HEADLINE[row.kind]:
            value = row.scores[metric]
            line[metric] = round(value, 2)
            if metric in tested:
                line[f"{metric} ±"] = round(tested[metric].system_ci, 2)
            if base is not None:
                line[f"base {metric}"] = round(base.scores[metric], 2)
                line[f"gain {metric}"] = round(value - base.scores[metric], 2)
            if metric in tested:
                line[f"p {metric}"] = round(tested[metric].p_value, 4)
                line[f"significant {metric}"] = texts.VERDICTS[tested[metric].verdict]
        table.append(line)
    return table


def _paired(row: Evaluation, base: Evaluation) -> dict:
    paths = [Path(evaluation.predictions_path or "") for evaluation in (row, base)]
    if not all(path.is_file() for path in paths):
        return {}
    stamps = [path.stat().st_mtime_ns for path in paths]
    try:
        return _cached_comparison(str(paths[0]), str(paths[1]), *stamps)
    except UserError:  # not the same examples after all: show the plain scores
        return {}


@functools.lru_cache(maxsize=256)
def _cached_comparison(system: str, baseline: str, *_stamps) -> dict:
    """A page shows the same comparisons on every rerun: resample each pair of files once."""
    return compare_prediction_files(Path(system), Path(baseline))[0]


def rivals(db, adapter: Adapter) -> dict[str, tuple[Evaluation, Evaluation]]:
    """Other translators evaluated on the same sentences as this one: their name → (this adapter's
    evaluation, theirs), the newest pair for each."""
    found = {}
    for row in evaluation_rows.for_adapter(db, adapter.id):
        if row.kind != "translation":
            continue
        for other in evaluation_rows.of_other_adapters(db, row):
            found.setdefault(other.adapter_name, (row, other))
    return found


def head_to_head(mine: Evaluation, theirs: Evaluation, my_name: str, their_name: str) -> list[dict]:
    """This adapter against another on the same sentences: per metric both scores with their 95%
    intervals, the p-value of the difference and the verdict for this adapter."""
    tested = _paired(mine, theirs)
    columns = texts.SCORE_COLUMNS
    return [
        {
            columns["metric"]: metric,
            my_name: f"{result.system:.2f} ± {result.system_ci:.2f}",
            their_name: f"{result.baseline:.2f} ± {result.baseline_ci:.2f}",
            columns["p"]: round(result.p_value, 4),
            columns["significant"]: texts.VERDICTS[result.verdict],
        }
        for metric, result in tested.items()
    ]


def _metrics(line: dict) -> list[str]:
    return [key for key in line if key in METRICS]


def with_headers(table: list[dict]) -> list[dict]:
    """The score table with its column names in the chosen language (metric names stay: BLEU is BLEU)."""
    columns = texts.SCORE_COLUMNS
    names = {"dataset": columns["dataset"], "n": columns["n"]}
    renamed = []
    for line in table:
        for metric in _metrics(line):
            names[f"base {metric}"] = f"{columns['base']} {metric}"
            names[f"gain {metric}"] = f"{columns['gain']} {metric}"
            names[f"p {metric}"] = f"{columns['p']} {metric}"
            names[f"significant {metric}"] = f"{columns['significant']} {metric}"
        renamed.append({names.get(key, key): value for key, value in line.items()})
    return renamed


def score_chart_rows(table: list[dict], *, metric: str, adapter: str, base: str) -> list[dict]:
    """One row per metric and dataset, with the adapter's score next to its base's (0 when the base
    was not scored on that dataset), under the given column names, for a grouped bar chart."""
    rows = []
    for line in table:
        dataset = line["dataset"].split(" [")[0]
        for name in _metrics(line):
            rows.append(
                {metric: f"{name} · {dataset}", adapter: line[name], base: line.get(f"base {name}", 0.0)}
            )
    return rows


def evaluation_examples(db, adapter: Adapter, limit: int = 200) -> list[dict]:
    """(input, reference) pairs from the adapter's newest evaluation, to try in compare mode."""
    import json
    from pathlib import Path

    for row in evaluation_rows.for_adapter(db, adapter.id):
        path = Path(row.predictions_path or "")
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()[:limit]
            return [
                {k: v for k, v in json.loads(line).items() if k in ("input", "reference")} for line in lines
            ]
    return []
