"""One plan per job: made once, where the request is checked; stored with the job; loaded and
verified by every process that runs it.

`make` turns a checked config into a `Plan`: the dataset read and split (instruction data, or
preference data for a preference job: training/data/pairs.py), the base model resolved, the size-based
defaults chosen, the prompt format decided and every example tokenised. The tokens are cached by
what they were made from (dataset fingerprint, limit and split, the tokenizer's files, prompt format,
role, max length, method), so a resume, or a second job on the same data, tokenises nothing.
A job that continues an adapter (its parent) records which weights it started from; every process
checks they are still those.

`store` writes the plan into the job's folder (`plan.json`, written whole or not at all); `load` is
what the trainer, the launcher it re-executes as, and each other rank do instead of checking and
tokenising again: read the plan, check that the dataset file still has its fingerprint and that
the cached tokens are the ones the plan names.
"""

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from core import home
from core.errors import UserError
from engine import catalogue, loading, models
from engine.adapters import weights_fingerprint
from engine.roles import Role
from training import defaults
from training.config import TrainConfig
from training.data import pairs
from training.data.batching import choose_packing
from training.data.datasets import load_dataset, parse_dataset, read_data_file, read_rows, split_holdout
from training.data.examples import TokenizedDataset, TokenizedPairs, tokenize_dataset, tokenize_pairs

PLAN_FILE = "plan.json"
# Bumped whenever training examples are built differently from the same inputs.
TOKENIZATION_VERSION = 1
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)

# what a TokenizedDataset (or TokenizedPairs) holds besides its examples
TOKENS_META = ("num_records", "num_truncated", "num_dropped", "max_length")
# cache/tokenized/ holds at most this many MiB (TRANSLATOR_TOKENS_CACHE_MB); the oldest written go
# first, and a job whose tokens went makes them again, once, when it starts (see `load`).
TOKENS_CACHE_MB = 2048

log = logging.getLogger("translator.train")


@dataclass(frozen=True)
class DataRef:
    """Which file a job trains on, and its bytes' fingerprint when the plan was made."""

    name: str
    path: Path
    fingerprint: str
    source: dict | None = None  # preference data: where it came from (training.data.pairs.provenance)


@dataclass(frozen=True)
class ParentRef:
    """The adapter a job continues: its LoRA trains further, and it is a preference job's reference."""

    name: str
    id: int
    path: Path
    fingerprint: str  # of its weights when the plan was made


@dataclass(frozen=True)
class Plan:
    """A checked request: what the trainer trains, exactly as it was checked."""

    config: TrainConfig  # canonical: clean name, canonical base id, absolute data path, prompt format
    role: Role
    dataset: DataRef
    heldout: list[dict]  # never trained on; evaluated inside the job
    spec: catalogue.ModelSpec
    model_dir: Path
    tokenizer: object
    tokenized: TokenizedDataset | TokenizedPairs
    packing: bool
    tokens_key: str  # names the cached tokens (see `tokens_key`)
    by_size: defaults.Recommendation | None = None  # when --lr or --epochs was -1 (by model size)
    parent: ParentRef | None = None

    def job_fields(self) -> dict:
        return {
            "adapter_name": self.config.name,
            "config": self.config.as_dict(),
            "base_model": self.config.base,
            "role": self.config.role,
            "dataset_path": self.config.data,
            "dataset_name": self.dataset.name,
            "dataset_fingerprint": self.dataset.fingerprint,
            "num_examples": len(self.tokenized.examples),
            "num_truncated": self.tokenized.num_truncated,
        }


def make(
    config: TrainConfig,
    role: Role,
    data_path: Path,
    *,
    parent: ParentRef | None = None,
    fingerprint=None,
    job_id=None,
    progress=None,
    tokenizers=None,
):
    """The plan of a checked config. `parent`: the adapter it continues (checked by the caller);
    `fingerprint`: the one a resumed job started with (a changed file is refused);
    `progress(fraction, text)` hears the model's conversion and the tokenising;
    `tokenizers(model_id)`: a caller's tokenizer of that base, already loaded the same way (the
    training page keeps one per base: loading Gemma's again costs seconds)."""
    spec = catalogue.parse_model_id(config.base)
    dataset = read_data(config, data_path)
    _refuse_changed(dataset.name, job_id, fingerprint, dataset.fingerprint)
    if config.validation_data:
        config = replace(config, holdout=0.0)
        trained, heldout = dataset, read_data(config, Path(config.validation_data)).records
    else:
        trained, heldout = split_holdout(dataset, config.holdout, config.seed)
    model_dir = models.resolve_model_dir(spec, progress)
    config, by_size = defaults.resolve(config, model_dir)
    model_type = loading.check_model_folder(model_dir, config.trust_remote_code)
    packing = (
        choose_packing(config.packing, model_type, config.trust_remote_code)
        and not config.prefers
        and not config.rewarded
    )
    given = tokenizers(spec.model_id) if tokenizers is not None and not config.trust_remote_code else None
    tokenizer = given or loading.load_tokenizer(model_dir, spec, config.trust_remote_code)
    prompt_format = (
        config.prompt_format
        or role.prompt_format
        or loading.default_prompt_format(spec, model_dir, tokenizer)
    )
    config = replace(config, base=spec.model_id, data=str(dataset.path), prompt_format=prompt_format)
    key = tokens_key(config, role, dataset.fingerprint, model_dir)
    tokenized = read_tokens(key)
    if tokenized is None:
        tokenized = tokenize(config, role, trained, tokenizer, progress)
        write_tokens(key, tokenized)
    source = dataset.source if config.prefers else None
    data = DataRef(dataset.name, dataset.path, dataset.fingerprint, source)
    return Plan(
        config, role, data, heldout, spec, model_dir, tokenizer, tokenized, packing, key, by_size, parent
    )


def read_data(config: TrainConfig, path: Path):
    """The job's data: instruction data, or preference data of the kind its method learns from."""
    if config.rewarded:  # the file read once: its rows say whether it holds preferences
        file, raw = read_data_file(path)
        if pairs.holds_preferences(read_rows(raw, file.suffix.lower(), file.name)):
            raise UserError("ERR_GRPO_NEEDS_INSTRUCTIONS", name=file.name)
        return parse_dataset(raw, file.suffix.lower(), name=file.name, path=file, limit=config.limit or None)
    if not config.prefers:
        return load_dataset(path, limit=config.limit or None)
    data = pairs.load(path, limit=config.limit or None)
    if data.kind == pairs.UNPAIRED and config.method != "kto":
        raise UserError("ERR_METHOD_NEEDS_PAIRS", method=config.method.upper(), name=data.name)
    return data


def trained_records(plan: Plan) -> list[dict]:
    """The records a job trains on, read again from its verified file and split as when it was
    planned (GRPO samples from their prompts and scores against their outputs)."""
    dataset = read_data(plan.config, plan.dataset.path)
    if plan.config.validation_data:
        return list(dataset.records)
    trained, _ = split_holdout(dataset, plan.config.holdout, plan.config.seed)
    return list(trained.records)


def tokenize(config: TrainConfig, role: Role, trained, tokenizer, progress=None):
    if not config.prefers:
        return tokenize_dataset(trained, tokenizer, config.prompt_format, role, config.max_length, progress)
    records = pairs.unpaired(trained.records) if config.method == "kto" else trained.records
    return tokenize_pairs(
        records,
        trained.name,
        tokenizer,
        config.prompt_format,
        role,
        config.max_length,
        config.max_prompt_length,
        progress,
    )


def parent_ref(adapter) -> ParentRef:
    """What a plan records of the adapter a job continues (registry.adapters.Adapter)."""
    return ParentRef(adapter.name, adapter.id, Path(adapter.path), weights_fingerprint(Path(adapter.path)))


def store(plan: Plan, job_dir: Path) -> Path:
    """The plan in the job's folder, replacing the one before (a resume's): complete or absent."""
    stored = {
        "config": plan.config.as_dict(),
        "role": plan.role.as_dict(),
        "dataset": {
            "name": plan.dataset.name,
            "path": str(plan.dataset.path),
            "fingerprint": plan.dataset.fingerprint,
            "source": plan.dataset.source,
        },
        "parent": _parent_fields(plan.parent),
        "heldout": plan.heldout,
        "model_dir": str(plan.model_dir),
        "packing": plan.packing,
        "tokens_key": plan.tokens_key,
        "by_size": asdict(plan.by_size) if plan.by_size is not None else None,
    }
    job_dir.mkdir(parents=True, exist_ok=True)
    path = job_dir / PLAN_FILE
    _write_whole(path, json.dumps(stored, ensure_ascii=False, indent=1).encode("utf-8"))
    return path


def load(job_dir: Path, job_id: int, **overrides) -> Plan:
    """The plan this job was checked with, verified: its dataset file unchanged, the adapter it
    continues unchanged, its tokens those it names (made again, once, if the cache was cleared or
    the tokenizer's files changed since)."""
    path = Path(job_dir) / PLAN_FILE
    if not path.is_file():
        raise UserError("ERR_NO_PLAN", job=job_id, path=path)
    stored = json.loads(path.read_text(encoding="utf-8"))
    config = replace(TrainConfig(**stored["config"]), **overrides, job_id=job_id)
    role = Role.from_dict(stored["role"])
    data = DataRef(
        stored["dataset"]["name"],
        Path(stored["dataset"]["path"]),
        stored["dataset"]["fingerprint"],
        stored["dataset"].get("source"),
    )
    _refuse_changed(data.name, job_id, data.fingerprint, file_fingerprint(data.path))
    parent = _parent_from(stored.get("parent"))
    check_parent(parent, job_id)
    spec, model_dir = catalogue.parse_model_id(config.base), Path(stored["model_dir"])
    tokenizer = loading.load_tokenizer(model_dir, spec, config.trust_remote_code)
    key = tokens_key(config, role, data.fingerprint, model_dir)
    tokenized = read_tokens(key) if key == stored["tokens_key"] else None
    if tokenized is None:
        log.info("the cached tokens of job %s are gone or stale: tokenising %s again", job_id, data.name)
        trained, _ = split_holdout(read_data(config, data.path), config.holdout, config.seed)
        tokenized = tokenize(config, role, trained, tokenizer)
        write_tokens(key, tokenized)
    heldout, packing = stored["heldout"], stored["packing"]
    by_size = defaults.Recommendation(**stored["by_size"]) if stored["by_size"] else None
    return Plan(
        config, role, data, heldout, spec, model_dir, tokenizer, tokenized, packing, key, by_size, parent
    )


def check_parent(parent: ParentRef | None, job_id) -> None:
    """The adapter a job continues still holds the weights the job started from."""
    if parent is None:
        return
    weights = parent.path / "adapter_model.safetensors"
    if not weights.is_file():
        raise UserError("ERR_PARENT_GONE", name=parent.name, job=job_id)
    if weights_fingerprint(parent.path) != parent.fingerprint:
        raise UserError("ERR_PARENT_CHANGED", name=parent.name, job=job_id)


def _parent_fields(parent: ParentRef | None) -> dict | None:
    if parent is None:
        return None
    return {"name": parent.name, "id": parent.id, "path": str(parent.path), "fingerprint": parent.fingerprint}


def _parent_from(stored: dict | None) -> ParentRef | None:
    return (
        None
        if not stored
        else ParentRef(stored["name"], stored["id"], Path(stored["path"]), stored["fingerprint"])
    )


def tokens_key(config: TrainConfig, role: Role, data_fingerprint: str, model_dir: Path) -> str:
    """What a job's training examples are made from, as one hash."""
    inputs = {
        "version": TOKENIZATION_VERSION,
        "data": data_fingerprint,
        "limit": config.limit,
        "holdout": config.holdout,
        "seed": config.seed,
        "tokenizer": tokenizer_fingerprint(model_dir),
        "format": config.prompt_format,
        "role": role.as_dict(),
        "max_length": config.max_length,
    }
    if config.prefers:  # instruction data's keys stay as they were before preference tuning
        inputs.update(method=config.method, max_prompt_length=config.max_prompt_length)
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:24]


def tokenizer_fingerprint(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        path = Path(model_dir) / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def file_fingerprint(path: Path) -> str:
    """Like training.data.datasets's fingerprint of a dataset, without parsing it."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        raise UserError("ERR_DATA_MISSING", path=path) from None


def read_tokens(key: str) -> TokenizedDataset | TokenizedPairs | None:
    path = home.tokenized_cache_dir() / f"{key}.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as arrays:
        meta = json.loads(str(arrays["meta"]))
        if "prompt_ids" in arrays:
            return _read_pairs(arrays, meta)
        from engine.formats import TrainingExample

        ids, labels = arrays["input_ids"].tolist(), arrays["labels"].tolist()
        lengths, prompts, fulls = (
            arrays[name].tolist() for name in ("lengths", "prompt_lengths", "full_lengths")
        )
    examples, start = [], 0
    for length, prompt_length, full_length in zip(lengths, prompts, fulls, strict=True):
        examples.append(
            TrainingExample(
                ids[start : start + length], labels[start : start + length], prompt_length, full_length
            )
        )
        start += length
    return TokenizedDataset(examples, **meta)


def _read_pairs(arrays, meta: dict) -> TokenizedPairs:
    from engine.formats import PreferenceExample

    parts = {name: _split(arrays[name], arrays[f"{name}_lengths"]) for name in PAIR_PARTS}
    labels = arrays["labels"].tolist()
    examples = [
        PreferenceExample(prompt, chosen, rejected, None if label < 0 else bool(label), full)
        for prompt, chosen, rejected, label, full in zip(
            *(parts[name] for name in PAIR_PARTS), labels, arrays["full_lengths"].tolist(), strict=True
        )
    ]
    return TokenizedPairs(examples, **meta)


PAIR_PARTS = ("prompt_ids", "chosen_ids", "rejected_ids")


def _split(flat, lengths) -> list[list[int]]:
    flat, pieces, start = flat.tolist(), [], 0
    for length in lengths.tolist():
        pieces.append(flat[start : start + length])
        start += length
    return pieces


def write_tokens(key: str, tokenized: TokenizedDataset | TokenizedPairs) -> None:
    examples = tokenized.examples
    meta = {name: getattr(tokenized, name) for name in TOKENS_META}
    if isinstance(tokenized, TokenizedPairs):
        arrays = {"labels": np.array([-1 if e.label is None else int(e.label) for e in examples])}
        for name in PAIR_PARTS:
            arrays[name] = np.fromiter((t for e in examples for t in getattr(e, name)), dtype=np.int64)
            arrays[f"{name}_lengths"] = np.array([len(getattr(e, name)) for e in examples], dtype=np.int64)
        arrays["full_lengths"] = np.array([e.full_length for e in examples], dtype=np.int64)
    else:
        arrays = {
            "input_ids": np.fromiter((t for e in examples for t in e.input_ids), dtype=np.int64),
            "labels": np.fromiter((t for e in examples for t in e.labels), dtype=np.int64),
            "lengths": np.array([len(e.input_ids) for e in examples], dtype=np.int64),
            "prompt_lengths": np.array([e.prompt_length for e in examples], dtype=np.int64),
            "full_lengths": np.array([e.full_length for e in examples], dtype=np.int64),
        }
    arrays["meta"] = np.array(json.dumps(meta))
    path = home.tokenized_cache_dir() / f"{key}.npz"
    staging = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        with open(staging, "wb") as file:
            np.savez(file, **arrays)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    keep_tokens_cache_bounded(path.parent, keep=path)


def keep_tokens_cache_bounded(cache: Path, keep: Path) -> list[Path]:
    """Remove the oldest token files until the cache fits its limit; `keep` (just written) stays.
    Returns what was removed."""
    limit = float(os.environ.get("TRANSLATOR_TOKENS_CACHE_MB") or TOKENS_CACHE_MB) * 2**20
    files = []
    for path in cache.glob("*.npz"):
        try:
            status = path.stat()
        except OSError:  # removed meanwhile by another process
            continue
        files.append((status.st_mtime_ns, status.st_size, path))
    total = sum(size for _, size, _ in files)
    removed = []
    for _, size, path in sorted(files):
        if total <= limit:
            break
        if path == keep:
            continue
        path.unlink(missing_ok=True)
        total -= size
        removed.append(path)
    return removed


def _write_whole(path: Path, data: bytes) -> None:
    staging = path.with_name(f".tmp-{path.name}")
    staging.write_bytes(data)
    os.replace(staging, path)


def _refuse_changed(name: str, job_id, before: str | None, after: str) -> None:
    if before not in (None, "", after):
        raise UserError("ERR_DATA_CHANGED", name=name, job=job_id, before=before, after=after)
