"""Preference data: what people preferred, in one format from three sources.

- a file in the formats TRL reads: `prompt`/`chosen`/`rejected` as texts or as chat messages (the
  prompt may be implicit: the messages chosen and rejected share), or KTO's unpaired
  `prompt`/`completion`/`label`; or in OpenAI's (`input.messages`, `preferred_output`,
  `non_preferred_output`);
- the chat page's blind votes (`from_votes`): each decisive vote is a pair, its prompt rebuilt from
  the role the answers were given in;
- a translator's own mistakes (training/evaluation/mistakes.py): the reference chosen over its greedy output.

Every row becomes one record (a dict): `prompt` (the user's text, which the prompt format wraps
exactly as chat does), `system` (None: the role's system prompt), `history` ([question, answer]
turns before it), then `chosen` and `rejected`, or `completion` and `label`; and where it came from
(`vote_id`, `mistake_of`). `write_jsonl` writes records in TRL's conversational format, which
`load` reads back as the same records. Bad rows are refused with one message each, before any job.
"""

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import UserError
from core.texts import Message
from registry import votes as vote_rows
from studio.accounts import LOCAL, Asker
from studio.supervisor import staging_file
from training.data.datasets import fingerprint, read_data_file, read_rows

PAIRED, UNPAIRED = "paired", "unpaired"
SOURCE_FIELDS = ("vote_id", "mistake_of")  # kept from a row: where the record came from
SFT_FIELDS = {"instruction", "output"}
# a row with any of these is preference data (TRL's pairs or judged answers, or OpenAI's pairs)
PREFERENCE_KEYS = {"chosen", "rejected", "completion", "label", "preferred_output", "non_preferred_output"}


def holds_preferences(rows: list) -> bool:
    """Whether a file's rows are preference data rather than instruction data (its first row says)."""
    return bool(rows) and isinstance(rows[0], dict) and bool(PREFERENCE_KEYS & set(map(str, rows[0])))


@dataclass(frozen=True)
class PreferenceData:
    name: str
    path: Path
    fingerprint: str  # of the file's bytes, as training.data.datasets's
    records: list[dict]
    total_records: int  # before a limit
    kind: str  # paired | unpaired

    @property
    def source(self) -> dict:
        """Where the records came from, as an adapter's lineage records it."""
        return provenance(self.records, self.name, self.fingerprint)


def load(path: str | Path, limit: int | None = None) -> PreferenceData:
    path, raw = read_data_file(path)
    return parse(raw, path.suffix.lower(), name=path.name, path=path, limit=limit)


def parse(raw: bytes, suffix: str, *, name: str, path: Path | None = None, limit=None) -> PreferenceData:
    """Bytes already in memory (an upload) checked exactly as a file on disk."""
    rows = read_rows(raw, suffix, name)
    records, kind = [], None
    for number, row in enumerate(rows, start=1):
        record = _record(row, number, name)
        this = PAIRED if "chosen" in record else UNPAIRED
        if kind is not None and this != kind:
            raise UserError(
                "ERR_PAIRS_MIXED",
                name=name,
                number=number,
                kind=Message(f"PAIR_KINDS.{this}"),
                first=Message(f"PAIR_KINDS.{kind}"),
            )
        kind = this
        records.append(record)
    if limit is not None and limit < 1:
        raise UserError("ERR_LIMIT", limit=limit)
    return PreferenceData(
        name=name,
        path=Path(path) if path else Path(name),
        fingerprint=fingerprint(raw),
        records=records[:limit] if limit else records,
        total_records=len(records),
        kind=kind,
    )


def _record(row, number: int, name: str) -> dict:
    where = {"name": name, "number": number}
    if not isinstance(row, dict):
        raise UserError("ERR_PAIRS_NOT_OBJECT", **where)
    if "preferred_output" in row or "non_preferred_output" in row:
        row = _from_openai(row, where)
    if "chosen" in row or "rejected" in row:
        for needed in ("chosen", "rejected"):
            if needed not in row:
                raise UserError("ERR_PAIRS_MISSING", **where, field=needed)
        prompt, chosen, rejected = _explicit_or_implicit_prompt(row, where)
        record = {**prompt, "chosen": chosen, "rejected": rejected}
        if chosen.strip() == rejected.strip():
            raise UserError("ERR_PAIRS_SAME", **where)
    elif "completion" in row or "label" in row:
        for needed in ("prompt", "completion", "label"):
            if needed not in row:
                raise UserError("ERR_PAIRS_MISSING", **where, field=needed)
        record = {
            **_prompt(row["prompt"], where),
            "completion": _answer(row["completion"], "completion", where),
            "label": _label(row["label"], where),
        }
    elif SFT_FIELDS <= set(map(str, row)) or {"input", "output"} <= set(map(str, row)) or "messages" in row:
        raise UserError("ERR_PAIRS_SFT", name=name)
    else:
        present = ", ".join(sorted(map(str, row))) or Message("NOTHING")
        raise UserError("ERR_PAIRS_FORMAT", **where, present=present)
    for key in SOURCE_FIELDS:
        if row.get(key) not in (None, ""):
            record[key] = row[key]
    return record


def _from_openai(row: dict, where: dict) -> dict:
    """OpenAI's preference format (`input.messages`, `preferred_output`, `non_preferred_output`) as
    TRL's conversational pair it is the same as."""
    for needed in ("input", "preferred_output", "non_preferred_output"):
        if needed not in row:
            raise UserError("ERR_PAIRS_MISSING", **where, field=needed)
    given = row["input"]
    if not isinstance(given, dict) or "messages" not in given:
        raise UserError(
            "ERR_PAIRS_MESSAGES", **where, field="input", problem=Message("PROBLEM_INPUT_MESSAGES")
        )
    converted = {
        "prompt": given["messages"],
        "chosen": row["preferred_output"],
        "rejected": row["non_preferred_output"],
    }
    return {**converted, **{key: row[key] for key in SOURCE_FIELDS if key in row}}


def _explicit_or_implicit_prompt(row: dict, where: dict) -> tuple[dict, str, str]:
    if "prompt" in row:
        return (
            _prompt(row["prompt"], where),
            _answer(row["chosen"], "chosen", where),
            _answer(row["rejected"], "rejected", where),
        )
    chosen, rejected = row["chosen"], row["rejected"]
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        raise UserError("ERR_PAIRS_MISSING", **where, field="prompt")
    # TRL's implicit prompt: the messages both conversations share come before the two answers
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise UserError("ERR_PAIRS_MISSING", **where, field="prompt")
    return (
        _prompt(chosen[:shared], where),
        _answer(chosen[shared:], "chosen", where),
        _answer(rejected[shared:], "rejected", where),
    )


def _prompt(value, where: dict) -> dict:
    """The prompt as a user text, an optional system prompt and the turns before it."""
    if isinstance(value, str):
        if not value.strip():
            raise UserError("ERR_PAIRS_EMPTY", **where, field="prompt")
        return {"prompt": value, "system": None, "history": []}
    messages = _messages(value, "prompt", where)
    system = None
    if messages and messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    if not messages or messages[-1]["role"] != "user":
        raise UserError("ERR_PAIRS_MESSAGES", **where, field="prompt", problem=Message("PROBLEM_LAST_USER"))
    history = []
    for question, answer in zip(messages[:-1:2], messages[1:-1:2], strict=True):
        if (question["role"], answer["role"]) != ("user", "assistant"):
            raise UserError("ERR_PAIRS_MESSAGES", **where, field="prompt", problem=Message("PROBLEM_TURNS"))
        history.append([question["content"], answer["content"]])
    if not messages[-1]["content"].strip():
        raise UserError("ERR_PAIRS_EMPTY", **where, field="prompt")
    return {"prompt": messages[-1]["content"], "system": system, "history": history}


def _answer(value, field_name: str, where: dict) -> str:
    if isinstance(value, list):
        messages = _messages(value, field_name, where)
        if len(messages) != 1 or messages[0]["role"] != "assistant":
            raise UserError(
                "ERR_PAIRS_MESSAGES", **where, field=field_name, problem=Message("PROBLEM_ONE_ANSWER")
            )
        value = messages[0]["content"]
    if not isinstance(value, str):
        raise UserError("ERR_FIELD_TYPE", **where, field=field_name, kind=type(value).__name__)
    if not value.strip():
        raise UserError("ERR_PAIRS_EMPTY", **where, field=field_name)
    return value


def _messages(value, field_name: str, where: dict) -> list[dict]:
    if not isinstance(value, list) or not all(
        isinstance(m, dict)
        and m.get("role") in ("system", "user", "assistant")
        and isinstance(m.get("content"), str)
        for m in value
    ):
        raise UserError(
            "ERR_PAIRS_MESSAGES", **where, field=field_name, problem=Message("PROBLEM_NOT_MESSAGES")
        )
    return value


def _label(value, where: dict) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise UserError("ERR_PAIRS_LABEL", **where, value=value)


def unpaired(records: list[dict]) -> list[dict]:
    """Pairs as KTO's judged answers: the chosen answer desirable, the rejected one not (as TRL's
    unpair_preference_dataset does)."""
    if not records or "completion" in records[0]:
        return records
    judged = []
    for record in records:
        common = {k: v for k, v in record.items() if k not in ("chosen", "rejected")}
        judged.append({**common, "completion": record["chosen"], "label": True})
        judged.append({**common, "completion": record["rejected"], "label": False})
    return judged


# --- where records come from ----------------------------------------------------------------------


@dataclass(frozen=True)
class VotePairs:
    records: list[dict]
    skipped: dict = field(default_factory=dict)  # reason -> how many votes (texts.VOTES_SKIPPED)
    up_to: int | None = None  # the newest vote read
    roles: dict = field(default_factory=dict)  # role name -> pairs, among the votes read


def from_votes(
    db, base_model: str, role_name: str = "", *, up_to: int | None = None, asker: Asker = LOCAL
) -> VotePairs:
    """Each decisive blind vote `asker` cast on `base_model` (in `role_name`'s role, when given) as a
    pair: the winner's answer chosen, the other rejected, the prompt rebuilt from the role both
    answered in."""
    skipped, roles, records, newest = Counter(), Counter(), [], None
    for vote in vote_rows.for_base(db, base_model, up_to=up_to):
        if not asker.lists(vote.owner_id):
            continue
        newest = vote.id
        reason = _unusable(vote, role_name)
        if reason:
            skipped[reason] += 1
            continue
        role = vote.first_context["role"]
        roles[role["name"]] += 1
        first_won = vote.winner == "first"
        records.append(
            {
                "prompt": vote.prompt,
                "system": role.get("system_prompt") or "",
                "history": [],
                "chosen": vote.first_answer if first_won else vote.second_answer,
                "rejected": vote.second_answer if first_won else vote.first_answer,
                "vote_id": vote.id,
            }
        )
    return VotePairs(records, dict(skipped), newest, dict(roles))


def _unusable(vote, role_name: str) -> str:
    if vote.winner == "tie":
        return "tie"
    if not vote.first_context or not vote.second_context:
        return "no_context"
    first, second = vote.first_context["role"], vote.second_context["role"]
    if first.get("system_prompt") != second.get("system_prompt"):
        return "roles_differ"
    if role_name and first.get("name") != role_name:
        return "other_role"
    if not vote.prompt.strip() or not vote.first_answer.strip() or not vote.second_answer.strip():
        return "empty"
    if vote.first_answer.strip() == vote.second_answer.strip():
        return "same"
    return ""


def provenance(records: list[dict], name: str, data_fingerprint: str) -> dict:
    """What an adapter's lineage says of its preference data: votes up to id N, a translator's own
    mistakes, or a file; with the file's name, fingerprint and size."""
    described = {"file": name, "fingerprint": data_fingerprint, "records": len(records)}
    vote_ids = [r["vote_id"] for r in records if isinstance(r.get("vote_id"), int)]
    if records and len(vote_ids) == len(records):
        return {"kind": "votes", "up_to_vote": max(vote_ids), **described}
    sources = {r.get("mistake_of") for r in records}
    if records and len(sources) == 1 and None not in sources:
        return {"kind": "mistakes", "adapter": sources.pop(), **described}
    return {"kind": "file", **described}


# --- export ---------------------------------------------------------------------------------------


def as_trl_row(record: dict) -> dict:
    """A record in TRL's conversational format (the prompt as messages, each answer one assistant
    message), with where it came from."""
    messages = [{"role": "system", "content": record["system"]}] if record.get("system") is not None else []
    for question, answer in record.get("history") or []:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": record["prompt"]})
    row = {"prompt": messages}
    if "chosen" in record:
        row["chosen"] = [{"role": "assistant", "content": record["chosen"]}]
        row["rejected"] = [{"role": "assistant", "content": record["rejected"]}]
    else:
        row["completion"] = [{"role": "assistant", "content": record["completion"]}]
        row["label"] = record["label"]
    row.update({key: record[key] for key in SOURCE_FIELDS if key in record})
    return row


def to_jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(as_trl_row(r), ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write_jsonl(records: list[dict], path: Path) -> PreferenceData:
    """The records as a JSONL file, written whole or not at all, and that file as `load` reads it."""
    if not records:
        raise UserError("ERR_NO_PAIRS")
    raw = to_jsonl(records)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_file(path, os.getpid())
    try:
        staging.write_bytes(raw)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return parse(raw, ".jsonl", name=path.name, path=path)


def save_votes(
    db, base_model: str, role_name: str, folder: Path, asker: Asker = LOCAL
) -> tuple[PreferenceData, VotePairs]:
    """The usable votes as a file named by what it holds (role, newest vote, content): the data a
    preference job trains on, fixed at the moment it was taken."""
    pairs = from_votes(db, base_model, role_name, asker=asker)
    if not pairs.records:
        raise UserError("ERR_NO_VOTE_PAIRS", base=base_model, role=role_name or "*")
    digest = fingerprint(to_jsonl(pairs.records))
    name = f"votes-{role_name or 'all'}-upto{pairs.up_to}-{digest}.jsonl"
    return write_jsonl(pairs.records, Path(folder) / name), pairs
