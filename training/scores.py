"""Evaluation rows as a person reads them: the adapter's score, its base's, and the gain."""

from engine import texts
from registry import evaluations as evaluation_rows

HEADLINE = {"translation": ("bleu", "chrf"), "loss": ("loss", "perplexity")}


def score_table(db, adapter: dict) -> list[dict]:
    table = []
    for row in evaluation_rows.for_adapter(db, adapter["id"]):
        base = evaluation_rows.base_counterpart(db, row)
        line = {"dataset": f"{row['dataset_name']} [{row['dataset_fingerprint']}]", "n": row["num_examples"]}
        for metric in HEADLINE[row["kind"]]:
            value = row["scores"][metric]
            line[metric] = round(value, 2)
            if base is not None:
                line[f"base {metric}"] = round(base["scores"][metric], 2)
                line[f"gain {metric}"] = round(value - base["scores"][metric], 2)
        table.append(line)
    return table


def _metrics(line: dict) -> list[str]:
    return [key for key in line if key not in ("dataset", "n") and not key.startswith(("base ", "gain "))]


def with_headers(table: list[dict]) -> list[dict]:
    """The score table with its column names in the chosen language (metric names stay: BLEU is BLEU)."""
    columns = texts.SCORE_COLUMNS
    names = {"dataset": columns["dataset"], "n": columns["n"]}
    renamed = []
    for line in table:
        for metric in _metrics(line):
            names[f"base {metric}"] = f"{columns['base']} {metric}"
            names[f"gain {metric}"] = f"{columns['gain']} {metric}"
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


def evaluation_examples(db, adapter: dict, limit: int = 200) -> list[dict]:
    """(input, reference) pairs from the adapter's newest evaluation, to try in compare mode."""
    import json
    from pathlib import Path

    for row in evaluation_rows.for_adapter(db, adapter["id"]):
        path = Path(row["predictions_path"] or "")
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()[:limit]
            return [
                {k: v for k, v in json.loads(line).items() if k in ("input", "reference")} for line in lines
            ]
    return []
