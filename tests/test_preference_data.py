"""Preference data from three sources in one format: files in TRL's formats, blind votes, and a
translator's own mistakes; each bad file refused with one message; the tokens the model sees."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from core.errors import UserError
from core.home import PROJECT_ROOT
from engine import formats
from engine.roles import PERSONA, TRANSLATOR
from registry import votes
from studio import blind
from tests.conftest import write_json
from training.data import pairs

PAIRS_SAMPLE = PROJECT_ROOT / "data" / "translator_pairs.jsonl"
PLAIN = {"prompt": "Take one tablet.", "chosen": "每次服用一片。", "rejected": "每次服用tablet一片。"}
RECORD = {**PLAIN, "system": None, "history": []}


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _messages(*turns) -> list[dict]:
    return [{"role": role, "content": content} for role, content in turns]


def test_the_bundled_pairs_sample_is_valid_paired_data():
    data = pairs.load(PAIRS_SAMPLE)
    assert data.kind == pairs.PAIRED and len(data.records) == 24
    assert data.source == {
        "kind": "file",
        "file": "translator_pairs.jsonl",
        "fingerprint": data.fingerprint,
        "records": 24,
    }


def test_plain_conversational_and_implicit_prompt_pairs_give_the_same_record(tmp_path):
    conversational = {
        "prompt": _messages(("user", PLAIN["prompt"])),
        "chosen": _messages(("assistant", PLAIN["chosen"])),
        "rejected": _messages(("assistant", PLAIN["rejected"])),
    }
    implicit = {
        "chosen": _messages(("user", PLAIN["prompt"]), ("assistant", PLAIN["chosen"])),
        "rejected": _messages(("user", PLAIN["prompt"]), ("assistant", PLAIN["rejected"])),
    }
    files = [
        _jsonl(tmp_path / "plain.jsonl", [PLAIN]),
        write_json(tmp_path / "chat.json", [conversational]),
        _jsonl(tmp_path / "implicit.jsonl", [implicit]),
    ]
    (tmp_path / "plain.csv").write_text(
        "prompt,chosen,rejected\nTake one tablet.,每次服用一片。,每次服用tablet一片。\n"
    )
    files.append(tmp_path / "plain.csv")
    for path in files:
        data = pairs.load(path)
        assert data.records == [RECORD], path.name
        assert data.kind == pairs.PAIRED


def test_a_conversation_keeps_its_system_prompt_and_earlier_turns(tmp_path):
    row = {
        "prompt": _messages(
            ("system", "你是甄嬛。"),
            ("user", "你是谁？"),
            ("assistant", "臣妾甄嬛。"),
            ("user", "今日可好？"),
        ),
        "chosen": _messages(("assistant", "回皇上，臣妾一切都好。")),
        "rejected": _messages(("assistant", "我很好。")),
    }
    (record,) = pairs.load(_jsonl(tmp_path / "turns.jsonl", [row])).records
    assert record["system"] == "你是甄嬛。"
    assert record["history"] == [["你是谁？", "臣妾甄嬛。"]]
    assert record["prompt"] == "今日可好？"


def test_kto_judged_answers_read_labels_from_json_and_csv(tmp_path):
    rows = [
        {"prompt": "Take one tablet.", "completion": "每次服用一片。", "label": True},
        {"prompt": "Take one tablet.", "completion": "每次服用tablet一片。", "label": False},
    ]
    csv_rows = [
        "prompt,completion,label",
        "Take one tablet.,每次服用一片。,true",
        "Take one tablet.,每次服用tablet一片。,False",
    ]
    (tmp_path / "judged.csv").write_text("\n".join(csv_rows) + "\n")
    for path in (_jsonl(tmp_path / "judged.jsonl", rows), tmp_path / "judged.csv"):
        data = pairs.load(path)
        assert data.kind == pairs.UNPAIRED
        assert [(r["completion"], r["label"]) for r in data.records] == [
            ("每次服用一片。", True),
            ("每次服用tablet一片。", False),
        ]


def test_pairs_split_into_desirable_and_undesirable_answers_for_kto():
    judged = pairs.unpaired([RECORD])
    assert [(r["completion"], r["label"]) for r in judged] == [
        (PLAIN["chosen"], True),
        (PLAIN["rejected"], False),
    ]
    assert all(r["prompt"] == PLAIN["prompt"] for r in judged)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"prompt": "p", "chosen": "a"}], "row 1 has no 'rejected'"),
        ([{"chosen": "a", "rejected": "b"}], "row 1 has no 'prompt'"),
        ([PLAIN, {**PLAIN, "chosen": "  "}], "row 2 has an empty 'chosen'"),
        ([{**PLAIN, "rejected": PLAIN["chosen"]}], "row 1 has the same text as chosen and rejected"),
        ([{"question": "q", "answer": "a"}], "row 1 is not preference data \\(fields: answer, question\\)"),
        ([{"instruction": "i", "input": "x", "output": "y"}], "holds instruction data"),
        ([PLAIN, {"prompt": "p", "completion": "c", "label": True}], "row 2 holds judged answers"),
        ([{"prompt": "p", "completion": "c", "label": "maybe"}], "label must be true or false, not 'maybe'"),
        ([{"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"}], "is neither text nor a list"),
        ([{**PLAIN, "prompt": _messages(("assistant", "hi"))}], "must end with the user's message"),
        ([{**PLAIN, "chosen": _messages(("assistant", "a"), ("assistant", "b"))}], "exactly one assistant"),
        (["just text"], "row 1 is not an object"),
    ],
)
def test_bad_preference_files_give_one_clear_message(tmp_path, rows, message):
    with pytest.raises(UserError, match=message):
        pairs.load(_jsonl(tmp_path / "bad.jsonl", rows))


def test_uploads_are_checked_as_preference_data_before_they_are_kept(tmp_path):
    from training.data.datasets import save_upload

    with pytest.raises(UserError, match="row 1 has no 'rejected'"):
        save_upload("votes.jsonl", b'{"prompt": "p", "chosen": "a"}\n', tmp_path, parse=pairs.parse)
    assert not list(tmp_path.iterdir())
    kept = save_upload("my pairs.jsonl", PAIRS_SAMPLE.read_bytes(), tmp_path, parse=pairs.parse)
    assert pairs.load(kept).records == pairs.load(PAIRS_SAMPLE).records


def test_exported_jsonl_reads_back_as_the_same_records_in_trls_format(tmp_path):
    records = [
        RECORD,
        {
            "prompt": "今日可好？",
            "system": "你是甄嬛。",
            "history": [["你是谁？", "臣妾甄嬛。"]],
            "chosen": "好",
            "rejected": "坏",
            "vote_id": 7,
        },
    ]
    written = pairs.write_jsonl(records, tmp_path / "out" / "pairs.jsonl")
    assert written.records == pairs.load(written.path).records == records
    first = json.loads(written.path.read_text(encoding="utf-8").splitlines()[0])
    assert first["prompt"] == [{"role": "user", "content": PLAIN["prompt"]}]
    assert first["chosen"] == [{"role": "assistant", "content": PLAIN["chosen"]}]
    assert not [p for p in written.path.parent.iterdir() if p.name.startswith(".tmp")]


def _vote(db, shown, answers, choice, roles, prompt="今日可好？"):
    round_ = blind.Round(prompt, "builtin", shown, answers, tuple(blind.context(r, "plain") for r in roles))
    return blind.record(db, round_, choice)


def test_decisive_votes_become_pairs_with_the_winner_chosen_and_the_role_they_were_asked_in(db):
    _vote(db, ("huanhuan", ""), ("臣妾在。", "I am here."), "a", (PERSONA, PERSONA))  # the adapter won
    _vote(db, ("", "huanhuan"), ("Hello.", "回皇上。"), "b", (PERSONA, PERSONA))  # again, shown second
    _vote(db, ("huanhuan", ""), ("甲", "乙"), "tie", (PERSONA, PERSONA))
    _vote(db, ("huanhuan", ""), ("甲", "乙"), "a", (PERSONA, TRANSLATOR))  # answered in two roles
    _vote(db, ("med", ""), ("患者。", "Patient."), "a", (TRANSLATOR, TRANSLATOR), prompt="Patient.")
    votes.store(db, base_model="builtin", first="", second="huanhuan", winner="first", prompt="old")
    found = pairs.from_votes(db, "builtin", "persona")
    assert [(r["chosen"], r["rejected"]) for r in found.records] == [
        ("臣妾在。", "I am here."),
        ("回皇上。", "Hello."),
    ]
    assert all(r["system"] == PERSONA.system_prompt and r["prompt"] == "今日可好？" for r in found.records)
    assert found.skipped == {"tie": 1, "roles_differ": 1, "other_role": 1, "no_context": 1}
    assert found.up_to == 6 and found.roles == {"persona": 2}
    assert pairs.from_votes(db, "builtin", "persona", up_to=1).records == found.records[:1]
    assert pairs.from_votes(db, "other-base", "persona").records == []


def test_votes_taken_as_a_file_say_up_to_which_vote_and_are_fixed_at_that_moment(db, home):
    first = _vote(db, ("huanhuan", ""), ("臣妾在。", "I am here."), "a", (PERSONA, PERSONA))
    data, found = pairs.save_votes(db, "builtin", "persona", home / "preference-data")
    assert data.source["kind"] == "votes" and data.source["up_to_vote"] == first["id"] == found.up_to
    assert data.path.name.startswith(f"votes-persona-upto{first['id']}-")
    _vote(db, ("huanhuan", ""), ("回皇上。", "Hello."), "a", (PERSONA, PERSONA))
    later, _ = pairs.save_votes(db, "builtin", "persona", home / "preference-data")
    assert later.path != data.path and len(later.records) == 2 and len(pairs.load(data.path).records) == 1
    with pytest.raises(UserError, match="No usable votes on builtin in the role translator"):
        pairs.save_votes(db, "builtin", "translator", home / "preference-data")


def test_votes_keep_each_sides_context_when_the_adapter_is_renamed(db):
    _vote(db, ("b-adapter", "a-adapter"), ("B says", "A says"), "a", (PERSONA, TRANSLATOR))
    votes.rename(db, "builtin", "b-adapter", "0-adapter")  # now first in name order: the sides swap
    (vote,) = votes.for_base(db, "builtin")
    assert (vote.first, vote.first_answer, vote.first_context["role"]["name"]) == (
        "0-adapter",
        "B says",
        "persona",
    )
    assert (vote.second_answer, vote.second_context["role"]["name"]) == ("A says", "translator")


def test_provenance_names_self_made_pairs_and_plain_files():
    mistakes = [{**RECORD, "mistake_of": "med-zh"}] * 2
    assert pairs.provenance(mistakes, "m.jsonl", "f")["kind"] == "mistakes"
    assert pairs.provenance(mistakes, "m.jsonl", "f")["adapter"] == "med-zh"
    assert pairs.provenance([RECORD], "x.jsonl", "f") == {
        "kind": "file",
        "file": "x.jsonl",
        "fingerprint": "f",
        "records": 1,
    }


def test_a_pair_is_tokenised_with_the_prompt_chat_sends_and_each_answer_as_a_target(builtin_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(builtin_dir)
    record = {
        "prompt": "今日可好？",
        "system": "你是甄嬛。",
        "history": [["你是谁？", "臣妾甄嬛。"]],
        "chosen": "好",
        "rejected": "不好",
    }
    example = formats.preference_example(tokenizer, "chat_template", PERSONA, record, max_length=384)
    role = replace(PERSONA, system_prompt="你是甄嬛。")
    chat = formats.prompt_ids(tokenizer, "chat_template", role, "今日可好？", [("你是谁？", "臣妾甄嬛。")])
    assert example.prompt_ids == chat  # exactly what chat sends for this turn
    for answer, ids in (("好", example.chosen_ids), ("不好", example.rejected_ids)):
        assert ids == formats.target_ids(tokenizer, "chat_template", role, "今日可好？", answer)
    plain = formats.preference_example(tokenizer, "plain", TRANSLATOR, RECORD, max_length=384)
    assert plain.chosen_ids[-1] == plain.rejected_ids[-1] == tokenizer.eos_token_id
    cut = formats.preference_example(
        tokenizer, "plain", TRANSLATOR, RECORD, max_length=len(plain.prompt_ids) + 2
    )
    assert len(cut.chosen_ids) == 2 and cut.truncated
    assert (
        formats.preference_example(tokenizer, "plain", TRANSLATOR, RECORD, max_length=len(plain.prompt_ids))
        is None
    )
