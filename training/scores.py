"""Evaluation rows as a person reads them: the adapter's score, its base's, and the gain."""

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
