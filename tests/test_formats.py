"""The prompt a model is trained on is, token for token, the prompt chat sends it."""

import pytest

from core.errors import UserError
from engine import formats
from engine.roles import ASSISTANT, PERSONA, TRANSLATOR, Role
from training.data.datasets import Dataset
from training.data.examples import tokenize_dataset


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def chat_engine(tiny_model_dir):
    from engine.generation import ChatEngine

    return ChatEngine(str(tiny_model_dir), device="cpu")


@pytest.mark.parametrize("prompt_format", formats.FORMATS)
@pytest.mark.parametrize("role", [TRANSLATOR, PERSONA], ids=lambda r: r.name)
def test_training_prompt_equals_what_chat_sends_to_the_model(chat_engine, monkeypatch, prompt_format, role):
    record = {"instruction": "", "input": "The patient has a fever.", "output": "患者发烧。"}
    if role is PERSONA:
        record = {"instruction": "你是谁？", "input": "", "output": "我是甄嬛。"}
    example = formats.training_example(chat_engine.tokenizer, prompt_format, role, record)
    sent = []
    original_forward = chat_engine.model.forward

    def spy(*args, **kwargs):
        sent.append(kwargs["input_ids"][0].tolist())
        return original_forward(*args, **kwargs)

    monkeypatch.setattr(chat_engine.model, "forward", spy)
    monkeypatch.setattr(chat_engine, "prompt_format", prompt_format)
    one_token = role.decoding.with_changes(max_new_tokens=1, num_beams=1)
    text = formats.user_text(role, record["instruction"], record["input"])
    chat_engine.reply(text, role=role, decoding=one_token)
    assert sent == [example.input_ids[: example.prompt_length]]  # the prompt's one forward pass
    assert example.labels[: example.prompt_length] == [formats.IGNORE_INDEX] * example.prompt_length
    assert example.labels[example.prompt_length :] == example.input_ids[example.prompt_length :]


def test_yuan_format_is_the_tutorials(tokenizer):
    example = formats.training_example(tokenizer, "yuan", TRANSLATOR, {"input": "fever", "output": "发烧"})
    decoded = tokenizer.decode(example.input_ids)
    assert decoded == "fever<sep>发烧<eod>"
    assert tokenizer.decode(example.input_ids[: example.prompt_length]) == "fever<sep>"


def test_chat_template_target_ends_the_turn(tokenizer):
    example = formats.training_example(
        tokenizer, "chat_template", PERSONA, {"instruction": "你好", "output": "臣妾在"}
    )
    prompt = tokenizer.decode(example.input_ids[: example.prompt_length])
    target = tokenizer.decode(example.input_ids[example.prompt_length :])
    assert "现在你要扮演皇帝身边的女人--甄嬛" in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert target.startswith("臣妾在<|im_end|>")


def test_an_answer_whose_first_characters_merge_with_the_template_is_tokenised_after_the_prompt(tokenizer):
    """ "\n\nhi" after the template's "assistant\n" tokenises as one "\n\n\n" when rendered whole;
    chat generates after the prompt's own tokens, so training takes the answer's tokens after them
    (this used to refuse the whole dataset)."""
    prompt = formats.prompt_ids(tokenizer, "chat_template", PERSONA, "q")
    whole = tokenizer(
        formats.prompt_text(tokenizer, "chat_template", PERSONA, "q") + "\n\nhi<|im_end|>\n",
        add_special_tokens=False,
    )["input_ids"]
    assert whole[: len(prompt)] != prompt, "no merge at the boundary: the case is not shown"
    target = formats.target_ids(tokenizer, "chat_template", PERSONA, "q", "\n\nhi")
    assert tokenizer.decode(target) == "\n\nhi<|im_end|>\n"
    assert target == tokenizer("\n\nhi<|im_end|>\n", add_special_tokens=False)["input_ids"]


def test_plain_format_uses_system_prompt_and_eos(tokenizer):
    role = Role(name="r", title="r", system_prompt="Translate.")
    example = formats.training_example(tokenizer, "plain", role, {"input": "fever", "output": "发烧"})
    assert tokenizer.decode(example.input_ids) == f"Translate.\n\nfever\n\n发烧{tokenizer.eos_token}"


def test_history_is_kept_for_the_persona_and_dropped_for_the_translator(tokenizer):
    history = [("你是谁？", "我是甄嬛。")]
    with_history = formats.prompt_ids(tokenizer, "chat_template", PERSONA, "皇上呢？", history)
    assert "我是甄嬛。" in tokenizer.decode(with_history)
    translator = formats.prompt_ids(tokenizer, "chat_template", TRANSLATOR, "fever", history)
    assert translator == formats.prompt_ids(tokenizer, "chat_template", TRANSLATOR, "fever")


def test_record_instruction_wins_over_the_role_instruction():
    role = Role(name="r", title="r", instruction="Translate into Chinese:")
    assert formats.user_text(role, "", "fever") == "Translate into Chinese:\nfever"
    assert formats.user_text(role, "Summarise:", "fever") == "Summarise:\nfever"
    assert formats.user_text(ASSISTANT, "", "fever") == "fever"


def test_truncation_is_counted_and_fully_truncated_examples_are_dropped(tokenizer):
    long_output = "很长的译文。" * 60
    records = [
        {"instruction": "", "input": "short", "output": "短"},
        {"instruction": "", "input": "long answer", "output": long_output},
        {"instruction": "", "input": "word " * 200, "output": "长"},
    ]
    dataset = Dataset(name="d.jsonl", path=None, fingerprint="f", records=records, total_records=3)
    tokenized = tokenize_dataset(dataset, tokenizer, "yuan", TRANSLATOR, max_length=64)
    assert len(tokenized.examples) == 2
    assert (tokenized.num_truncated, tokenized.num_dropped) == (1, 1)
    assert all(len(example.input_ids) <= 64 for example in tokenized.examples)
    assert "1 truncated and 1 dropped at max_length 64" in tokenized.summary()
    with pytest.raises(UserError, match="Every example of d.jsonl is cut away at --max-length 8"):
        tokenize_dataset(
            dataset.__class__(**{**dataset.__dict__, "records": records[2:]}),
            tokenizer,
            "yuan",
            TRANSLATOR,
            max_length=8,
        )


def test_template_date_is_fixed_so_llama3_prompts_do_not_change_daily(tokenizer, monkeypatch):
    template = "{{ date_string }}|{% for m in messages %}{{ m['content'] }}{% endfor %}"
    monkeypatch.setattr(tokenizer, "chat_template", template)
    ids = formats.prompt_ids(tokenizer, "chat_template", ASSISTANT, "hi")
    assert tokenizer.decode(ids) == f"{formats.TEMPLATE_DATE}|hi"


def test_unknown_format_is_refused(tokenizer):
    with pytest.raises(UserError, match="Unknown prompt format 'alpaca'"):
        formats.prompt_ids(tokenizer, "alpaca", ASSISTANT, "hi")
