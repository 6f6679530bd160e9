import json
import re

import pytest

from core.errors import UserError
from training.data.datasets import load_dataset, parse_dataset


def test_jsonl_json_and_csv_load_to_the_same_records(tmp_path):
    rows = [{"input": "fever", "output": "发烧"}, {"instruction": "你是谁？", "input": "", "output": "甄嬛"}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    (tmp_path / "d.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "d.csv").write_text(
        "\ufeffinstruction,input,output\n,fever,发烧\n你是谁？,,甄嬛\n", encoding="utf-8"
    )
    expected = [
        {"instruction": "", "input": "fever", "output": "发烧"},
        {"instruction": "你是谁？", "input": "", "output": "甄嬛"},
    ]
    for suffix in ("jsonl", "json", "csv"):
        dataset = load_dataset(tmp_path / f"d.{suffix}")
        assert dataset.records == expected, suffix
        assert dataset.total_records == 2 and len(dataset.fingerprint) == 16


def test_limit_and_fingerprint(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"input": str(i), "output": "x"}) + "\n" for i in range(10)))
    limited = load_dataset(path, limit=3)
    assert len(limited.records) == 3 and limited.total_records == 10
    assert limited.fingerprint == load_dataset(path).fingerprint
    path.write_text(path.read_text() + json.dumps({"input": "new", "output": "y"}) + "\n")
    assert load_dataset(path).fingerprint != limited.fingerprint


def test_bundled_samples_are_valid():
    from core.home import PROJECT_ROOT

    translator = load_dataset(PROJECT_ROOT / "data" / "translator_sample.jsonl")
    persona = load_dataset(PROJECT_ROOT / "data" / "persona_sample.json")
    assert len(translator.records) >= 30 and len(persona.records) >= 30
    assert all(r["instruction"] for r in persona.records)
    chat = load_dataset(PROJECT_ROOT / "data" / "chat_sample.jsonl")
    assert len(chat.records) == 16 and all(r["system"] and r["history"] == [] for r in chat.records)


BAD_FILES = [
    ("missing.jsonl", None, "not found"),
    ("notes.txt", b"hello", "unsupported file type '.txt'"),
    ("latin1.jsonl", '{"input": "caf\xe9", "output": "x"}'.encode("latin-1"), "not UTF-8"),
    ("broken.json", b'[{"input": "a", "output": ', "not valid JSON \\(line 1"),
    ("broken.jsonl", b'{"input": "a", "output": "b"}\n{oops}\n', "line 2 is not valid JSON"),
    ("object.json", b'{"input": "a", "output": "b"}', "must hold a JSON list"),
    (
        "fields.jsonl",
        b'{"question": "a", "answer": "b"}\n',
        "example 1 lacks the fields 'output' and 'input'",
    ),
    ("empty.json", b"[]", "holds no examples"),
    ("empty.jsonl", b"\n\n", "holds no examples"),
    ("empty.csv", b"", "holds no examples"),
    ("number.jsonl", b'{"input": 3, "output": "b"}\n', "field 'input' must be text"),
    ("blank.jsonl", b'{"input": "a", "output": "  "}\n', "example 1 has an empty 'output'"),
    ("noprompt.jsonl", b'{"input": "", "output": "b"}\n', "neither 'instruction' nor 'input'"),
    ("scalar.jsonl", b'"just text"\n', "example 1 is not an object"),
    ("no-output.jsonl", b'{"input": "a", "answer": "b"}\n', "example 1 lacks the field 'output'; it has"),
    (
        "no-input.jsonl",
        b'{"question": "a", "output": "b"}\n',
        "lacks the field 'input' \\(or 'instruction'\\)",
    ),
    (
        "comma.csv",
        "input,output\nfever,发烧\nhigh fever, chills,高烧，寒战\n".encode(),
        "comma.csv line 3 has 3 fields but the header has 2 \\(input, output\\): put a value",
    ),
    ("short.csv", b"instruction,input,output\nx,fever\n", "line 2 has 2 fields but the header has 3"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files_give_one_clear_message(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message) as raised:
        load_dataset(path)
    assert "\n" not in str(raised.value)


def test_an_empty_path_asks_for_a_dataset():
    with pytest.raises(UserError, match="No dataset given"):
        load_dataset("  ")


def test_uploaded_bytes_are_checked_like_files():
    with pytest.raises(UserError, match="upload.jsonl is not UTF-8"):
        parse_dataset(b"\xff\xfe", ".jsonl", name="upload.jsonl")


def test_a_folder_or_a_pipe_is_not_called_missing(tmp_path):
    import os

    with pytest.raises(UserError, match="is a folder, not a dataset file"):
        load_dataset(tmp_path)
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="is not a regular file \\(a pipe or a device\\)"):
        load_dataset(fifo)


def test_a_quoted_comma_in_csv_keeps_all_the_chinese(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text('input,output\n"high fever, chills",高烧，寒战\n', encoding="utf-8")
    assert load_dataset(path).records == [
        {"instruction": "", "input": "high fever, chills", "output": "高烧，寒战"}
    ]


def test_records_written_as_jsonl_are_what_reading_the_file_gives(tmp_path):
    from core.home import PROJECT_ROOT
    from training.data.datasets import write_jsonl

    records = load_dataset(PROJECT_ROOT / "data" / "persona_sample.json").records[:5]
    written = write_jsonl(records, tmp_path / "heldout.jsonl")
    read = load_dataset(tmp_path / "heldout.jsonl")
    assert (written.fingerprint, written.records, written.name) == (read.fingerprint, read.records, read.name)


def test_a_chat_row_trains_on_each_weighted_assistant_message_with_the_turns_before_it():
    row = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Fever?"},
            {"role": "assistant", "content": "发热", "weight": 0},
            {"role": "user", "content": "Cough?"},
            {"role": "assistant", "content": "咳嗽"},
            {"role": "user", "content": "Both?"},
            {"role": "assistant", "content": "发热和咳嗽"},
        ]
    }
    records = parse_dataset(json.dumps(row).encode(), ".jsonl", name="chat.jsonl").records
    assert records == [
        {
            "instruction": "",
            "input": "Cough?",
            "output": "咳嗽",
            "system": "Be brief.",
            "history": [["Fever?", "发热"]],
        },
        {
            "instruction": "",
            "input": "Both?",
            "output": "发热和咳嗽",
            "system": "Be brief.",
            "history": [["Fever?", "发热"], ["Cough?", "咳嗽"]],
        },
    ]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "row 1: 'messages' must be a non-empty list"),
        ([{"role": "user", "content": "a"}], "must alternate user and assistant"),
        ([{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}], "must alternate"),
        ([{"role": "robot", "content": "a"}], "message 0 is not"),
        ([{"role": "user", "content": [{"type": "text"}]}], "message 0 has content of type list"),
        (
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": " "}],
            "message 1 (the assistant's) is empty",
        ),
        (
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0}],
            "nothing to learn",
        ),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 2}], "weight 2"),
    ],
)
def test_bad_chat_rows_are_refused_naming_the_row_and_the_message(messages, message, monkeypatch):
    monkeypatch.setenv("TRANSLATOR_LANG", "en")
    with pytest.raises(UserError, match=re.escape(message)):
        parse_dataset(json.dumps({"messages": messages}).encode(), ".jsonl", name="chat.jsonl")


def test_a_chat_record_is_trained_on_the_prompt_chat_sends_for_the_same_conversation(tiny_model_dir):
    from dataclasses import replace

    from engine import formats, loading
    from engine.catalogue import parse_model_id
    from engine.roles import ASSISTANT

    tokenizer = loading.load_tokenizer(tiny_model_dir, parse_model_id(str(tiny_model_dir)), False)
    row = {"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Fever?"},
        {"role": "assistant", "content": "发热"}, {"role": "user", "content": "Cough?"},
        {"role": "assistant", "content": "咳嗽"},
    ]}  # fmt: skip
    (first, second) = parse_dataset(json.dumps(row).encode(), ".jsonl", name="c.jsonl").records
    for prompt_format in ("chat_template", "plain"):
        example = formats.training_example(tokenizer, prompt_format, ASSISTANT, second)
        role = replace(ASSISTANT, system_prompt="Be brief.")
        sent = formats.prompt_ids(tokenizer, prompt_format, role, "Cough?", [("Fever?", "发热")])
        assert example.input_ids[: example.prompt_length] == sent
        assert tokenizer.decode(example.input_ids[example.prompt_length :]).startswith("咳嗽")
