"""Evaluate an adapter, or the base model alone, on a dataset; the scores go to the registry.

    python -m training.evaluation.evaluate --adapter t1 --data ../shared/data/paramed/dev.jsonl --limit 20
    python -m training.evaluation.evaluate --base-only --base builtin \
        --data ../shared/data/paramed/dev.jsonl --limit 20

Translator role: greedy, batched generation (left padding), then sacrebleu corpus BLEU with the `zh`
tokenizer and chrF (signatures printed and stored). Other roles: mean loss and perplexity of the
references under the model, plus greedy predictions for reading. The same evaluation (same adapter,
base, dataset fingerprint and size) is not recomputed unless --force; predictions are written as
JSONL (input, reference, output).
"""

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from core import home, texts  # noqa: E402
from core.errors import UserError  # noqa: E402
from engine import catalogue, formats  # noqa: E402
from engine.adapters import check_loadable  # noqa: E402
from engine.roles import Decoding  # noqa: E402
from registry import adapters as adapter_rows  # noqa: E402
from registry import connect  # noqa: E402
from registry import evaluations as evaluation_rows  # noqa: E402
from registry import tasks as task_rows  # noqa: E402
from registry.evaluations import Evaluation  # noqa: E402
from studio import (
    accounts,
    supervisor,  # noqa: E402
)
from studio.accounts import LOCAL, Asker, changeable_adapter
from studio.roles import get_role  # noqa: E402
from training.data.datasets import Dataset, load_dataset  # noqa: E402


def translation_scores(predictions: list[str], references: list[str]) -> tuple[dict, str]:
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(tokenize="zh"), CHRF()
    scores = {
        "bleu": bleu.corpus_score(predictions, [references]).score,
        "chrf": chrf.corpus_score(predictions, [references]).score,
    }
    return scores, f"BLEU {bleu.get_signature()} | chrF {chrf.get_signature()}"


_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z-]{2,}")


def untranslated_terms(predictions: list[str], references: list[str]) -> dict:
    """English words a translation kept that its reference does not have (the reference translated
    them; abbreviations and names the reference keeps, like "HIV" or "COVID-19", do not count):
    the share of sentences with at least one, and the most frequent words."""
    from collections import Counter

    kept = Counter()
    sentences = 0
    for prediction, reference in zip(predictions, references, strict=True):
        in_reference = {word.lower() for word in _LATIN_WORD.findall(reference)}
        words = [word for word in _LATIN_WORD.findall(prediction) if word.lower() not in in_reference]
        sentences += bool(words)
        kept.update(word.lower() for word in words)
    return {
        "sentences": sentences,
        "share": sentences / len(predictions) if predictions else 0.0,
        "most_common": kept.most_common(10),
    }


def parse_decoding(text: str, preset: Decoding) -> Decoding:
    """`greedy`, `beams=N` or `mbr=N` (with the preset's temperature and top_p, or `mbr=N,T,top_p`)
    as the decoding an evaluation uses instead of the role's preset."""
    name, _, value = text.strip().partition("=")
    try:
        if name == "greedy" and not value:
            return preset.with_changes(do_sample=False, num_beams=1, mbr_samples=0)
        if name == "beams":
            return preset.with_changes(do_sample=False, num_beams=int(value), mbr_samples=0)
        if name == "mbr":
            samples, *sampling = value.split(",")
            changes = dict(zip(("temperature", "top_p"), map(float, sampling), strict=False))
            return preset.with_changes(do_sample=False, num_beams=1, mbr_samples=int(samples), **changes)
    except ValueError:
        pass
    raise UserError("ERR_DECODING_CHOICE", text=text)


def length_caps(tokenizer, references: list[str], ceiling: int) -> list[int]:
    """A translation is about as long as its reference: stopping a rambling model at twice that
    saves most of the generation time without cutting real answers."""
    return [
        min(ceiling, 2 * len(tokenizer(ref, add_special_tokens=False)["input_ids"]) + 16)
        for ref in references
    ]


def evaluate(
    db,
    *,
    data: str,
    adapter_name: str | None = None,
    base: str | None = None,
    role_name: str | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    out: str | None = None,
    force: bool = False,
    engine=None,
    progress=None,
    dataset: Dataset | None = None,
    decoding: str | None = None,
) -> tuple[Evaluation, bool]:
    """Return (evaluation row, whether it was already stored). Checks everything before computing.
    `dataset`: `data` already loaded by the caller (read once per action); `decoding`: greedy,
    beams=N or mbr=N instead of the role's preset (`parse_decoding`)."""
    adapter = adapter_rows.require(db, adapter_name) if adapter_name else None
    base_model = adapter.base_model if adapter else catalogue.parse_model_id(base or "builtin").model_id
    if adapter and base and catalogue.parse_model_id(base).model_id != base_model:
        raise UserError("ERR_TRAINED_ON_OTHER_BASE", name=adapter_name, trained=base_model, base=base)
    role = get_role(db, role_name or (adapter.role if adapter else "translator"))
    if decoding:
        role = replace(role, decoding=parse_decoding(decoding, role.decoding))
    if batch_size < 1:
        raise UserError("ERR_BATCH_SIZE")
    dataset = dataset or load_dataset(data, limit=limit)
    if adapter is not None:  # refuse a wrong or broken adapter before loading anything heavy
        check_loadable(adapter, base_model)
    kind = role.metric
    key = {
        "adapter_id": adapter.id if adapter else None,
        "base_model": base_model,
        "kind": kind,
        "fingerprint": dataset.fingerprint,
        "num_examples": len(dataset.records),
        "decoding": role.decoding.with_changes(do_sample=False).key,
    }
    stored = evaluation_rows.find(db, **key)
    if stored and not force:
        return stored, True

    if engine is None:
        from engine.generation import ChatEngine

        engine = ChatEngine(base_model)
    scored = score_records(
        engine, dataset.records, role=role, adapter=adapter, batch_size=batch_size, progress=progress
    )
    scores, signature = scored.scores, scored.signature
    inputs, references, predictions = scored.inputs, scored.references, scored.predictions
    who = f"{adapter_name}-{adapter.id}" if adapter else f"base-{_short_hash(base_model, role.name)}"
    if role.decoding.mbr:
        who += f"-mbr{role.decoding.mbr_samples}-t{role.decoding.temperature:g}-p{role.decoding.top_p:g}"
    elif key["decoding"] != evaluation_rows.GREEDY:  # a greedy evaluation's file keeps its name
        who += f"-beams{role.decoding.num_beams}-lp{role.decoding.length_penalty:g}"
    path = _write_predictions(out, who, dataset, inputs, references, predictions)
    row = evaluation_rows.store(
        db,
        adapter_id=key["adapter_id"],
        adapter_name=adapter_name or "",
        base_model=base_model,
        role=role.name,
        kind=kind,
        dataset_name=dataset.name,
        dataset_fingerprint=dataset.fingerprint,
        num_examples=len(dataset.records),
        scores=scores,
        signature=signature,
        predictions_path=str(path),
        decoding=key["decoding"],
    )
    return row, False


@dataclass
class Scored:
    scores: dict
    signature: str
    inputs: list[str]
    references: list[str]
    predictions: list[str]  # empty when only the loss was asked for


def score_records(
    engine, records: list[dict], *, role, adapter, batch_size: int = 16, progress=None, predict: bool = True
) -> Scored:
    """Score `records` with the role's metric: translators by generation without sampling (greedy,
    or beam search where the role's preset asks for beams), BLEU and chrF; other roles by the
    references' loss (and such predictions for reading, unless `predict` is False: a checkpoint's
    score needs the loss alone)."""
    inputs = [formats.user_text(role, r["instruction"], r["input"]) for r in records]
    references = [r["output"] for r in records]
    predictions = []
    if role.metric == "translation" or predict:
        deterministic = role.decoding.with_changes(do_sample=False)
        predictions = engine.generate_batch(
            inputs,
            role=role,
            adapter=adapter,
            decoding=deterministic,
            batch_size=batch_size,
            max_new_tokens=length_caps(engine.tokenizer, references, deterministic.max_new_tokens),
            progress=progress,
        )
    if role.metric == "translation":
        scores, signature = translation_scores(predictions, references)
    else:
        total, count = engine.reference_loss(records, role=role, adapter=adapter)
        scores = {"loss": total / count, "perplexity": math.exp(total / count), "tokens": count}
        signature = f"mean cross-entropy over {count} reference tokens, prompts as in training"
    return Scored(scores, signature, inputs, references, predictions)


def evaluate_with_base(
    db, *, adapter_name: str, data: str, engine, limit=None, progress=None, dataset: Dataset | None = None
) -> list[Evaluation]:
    """The adapter, then its base alone on the same examples, so the gain can be shown.
    `progress(fraction)` covers both passes; `dataset` is `data` already read."""
    adapter = adapter_rows.require(db, adapter_name)
    dataset = dataset or load_dataset(data, limit=limit)
    total = 2 * len(dataset.records)
    rows = []
    for step, who in enumerate((adapter_name, None)):
        done_before = step * total // 2
        row, _ = evaluate(
            db,
            data=data,
            adapter_name=who,
            base=adapter.base_model,
            role_name=adapter.role,
            limit=limit,
            engine=engine,
            dataset=dataset,
            progress=None
            if progress is None
            else (lambda done, before=done_before: progress((before + done) / total)),
        )
        rows.append(row)
    return rows


KIND = "evaluate"  # the adapter card's Evaluate, a detached task of studio.supervisor


def launch(db, adapter_name: str, data: str, limit: int | None = None, asker: Asker = LOCAL):
    """The adapter card's Evaluate: the adapter and the data checked here, the evaluation (the
    adapter, then its base on the same examples) run by a detached task with its progress and Stop."""
    adapter = changeable_adapter(db, asker, adapter_name)
    check_loadable(adapter, adapter.base_model)
    dataset = load_dataset(data, limit=limit)
    settings = {"data": str(dataset.path.resolve()), "limit": limit}
    task = task_rows.create(db, kind=KIND, adapter_name=adapter_name, settings=settings, owner_id=asker.id)
    return supervisor.launch(db, task)


def _evaluation_task(db, task, stage) -> dict:
    from engine.generation import ChatEngine

    adapter = adapter_rows.require(db, task.adapter_name)
    stage(texts.EVALUATE_LOADING)
    engine = ChatEngine(adapter.base_model)
    rows = evaluate_with_base(
        db,
        adapter_name=adapter.name,
        data=task.settings["data"],
        limit=task.settings.get("limit"),
        engine=engine,
        progress=lambda fraction: stage(texts.EVALUATE_STAGE.format(percent=round(100 * fraction))),
    )
    return {"evaluations": [row.id for row in rows]}


def _write_predictions(out, who: str, dataset, inputs, references, predictions) -> Path:
    if out:
        path = Path(out).expanduser()
    else:
        folder = home.home() / "evaluations"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{who}-{dataset.fingerprint}-{len(inputs)}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".tmp-{path.name}")
    with open(staging, "w", encoding="utf-8") as file:
        for text, reference, output in zip(inputs, references, predictions, strict=True):
            file.write(
                json.dumps({"input": text, "reference": reference, "output": output}, ensure_ascii=False)
            )
            file.write("\n")
    staging.replace(path)
    return path


def _short_hash(*parts: str) -> str:
    """Base-model predictions of different bases and roles must not share a file name."""
    import hashlib

    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]


def describe(row: Evaluation) -> str:
    scores, lines = row.scores, []
    if row.kind == "translation":
        bleu_signature, chrf_signature = row.signature.removeprefix("BLEU ").split(" | chrF ")
        lines.append(f"BLEU = {scores['bleu']:.2f}  {bleu_signature}")
        lines.append(f"chrF = {scores['chrf']:.2f}  {chrf_signature}")
        lines.append(f"decoding: {row.decoding or 'greedy'}")
    else:
        lines.append(
            f"loss = {scores['loss']:.4f}  perplexity = {scores['perplexity']:.2f}  ({row.signature})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].isdigit():  # the detached task the adapter card started
        return supervisor.run_task(int(argv[0]), _evaluation_task)
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluation.evaluate", description=__doc__.split("\n\n")[0]
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--adapter", help="registered adapter to evaluate")
    who.add_argument("--base-only", action="store_true", help="evaluate the base model without adapter")
    parser.add_argument("--base", help="base model (default: the adapter's, else builtin)")
    parser.add_argument("--data", required=True, help=".json, .jsonl or .csv with input/output")
    parser.add_argument("--role", help="role (default: the adapter's, else translator)")
    parser.add_argument("--limit", type=int, help="only the first N examples")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per generate batch")
    parser.add_argument("--out", help="where to write predictions.jsonl")
    parser.add_argument("--force", action="store_true", help="recompute even if stored")
    parser.add_argument(
        "--decoding", help="greedy, beams=N or mbr=N[,temperature,top_p] (default: the role's preset)"
    )
    args = parser.parse_args(argv)
    try:
        from tqdm.auto import tqdm

        db = connect()
        if args.adapter:
            accounts.cli_adapter(db, args.adapter, change=True)
        dataset = load_dataset(args.data, limit=args.limit)
        bar = None

        def progress(done: int) -> None:
            nonlocal bar
            bar = bar or tqdm(total=len(dataset.records), desc="evaluating")
            bar.update(done - bar.n)

        row, cached = evaluate(
            db,
            data=args.data,
            adapter_name=args.adapter,
            base=args.base,
            role_name=args.role,
            limit=args.limit,
            batch_size=args.batch_size,
            out=args.out,
            force=args.force,
            progress=progress,
            dataset=dataset,
            decoding=args.decoding,
        )
        if bar is not None:
            bar.close()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    who = f"adapter {args.adapter}" if args.adapter else f"base {row.base_model}"
    print(f"{who} on {row.dataset_name} [{row.dataset_fingerprint}], {row.num_examples} examples")
    print(describe(row))
    note = "already stored, not recomputed (--force recomputes)" if cached else "stored"
    print(f"evaluation #{row.id} {note}; predictions: {row.predictions_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
