"""Markers stay out of replies: the built-ins' tokenizers as converted from their GGUF files, the
plain format's end of a base model's answer, and the text a stop is held to while it streams."""

import importlib

import pytest

from engine import catalogue, conversion, formats, generation, gguf_tokens, loading
from engine.generation import ChatEngine
from engine.reply_text import ReplyText
from engine.roles import ASSISTANT, Decoding

GREEDY = Decoding(do_sample=False, max_new_tokens=64)


def _gguf_path(model_id: str, scratch):
    builtin = catalogue.BUILTIN_MODELS[model_id]
    if builtin.assembled:
        importlib.import_module(builtin.package).assemble(scratch / builtin.gguf_file)
        return scratch / builtin.gguf_file
    return conversion.builtin_package_dir(builtin) / builtin.gguf_file


@pytest.fixture(scope="module")
def gemma_engine(gemma_dir):
    return ChatEngine(catalogue.CHINESE_BUILTIN, device="cpu")


@pytest.mark.parametrize(
    ("model_id", "controls"),
    [
        ("builtin", 17),
        pytest.param(catalogue.CHINESE_BUILTIN, 6249, marks=pytest.mark.slow),
    ],  # 262k tokens: ~17 s
)
def test_every_control_token_of_a_builtin_gguf_and_its_known_markers_are_special_once_converted(
    model_id, controls, tmp_path, request
):
    folder = request.getfixturevalue("gemma_dir" if model_id == catalogue.CHINESE_BUILTIN else "builtin_dir")
    assert conversion.conversion_version(folder) == conversion.CONVERSION_VERSION
    names = gguf_tokens.special_tokens(_gguf_path(model_id, tmp_path))
    tokenizer = loading.load_tokenizer(folder, catalogue.parse_model_id(model_id))
    special = {token.content for token in tokenizer.added_tokens_decoder.values() if token.special}
    vocabulary = tokenizer.get_vocab()
    in_vocabulary = [name for name in names if name in vocabulary]
    assert len(in_vocabulary) >= controls and set(in_vocabulary) <= special
    if model_id == catalogue.CHINESE_BUILTIN:
        # user-defined in the GGUF, special in Gemma 3's own tokenizer; 270m has no image soft token
        assert {"<start_of_image>", "<end_of_image>"} <= special and "<image_soft_token>" not in vocabulary
        assert "<table>" not in special, "HTML tags are user-defined text, not markers"


def _scripted(monkeypatch, script: list[int]) -> list[int]:
    """Make the engine choose `script`'s tokens in order, whatever the model's logits say; the
    returned list records each choice, so a test sees where decoding stopped."""
    import torch

    chosen: list[int] = []

    def scripted_chooser(model, decoding, generator=None):
        def choose(sequences, logits):
            token = script[len(chosen)]
            chosen.append(token)
            return torch.full((sequences.shape[0],), token, dtype=torch.long, device=logits.device)

        return choose

    monkeypatch.setattr(generation, "token_chooser", scripted_chooser)
    return chosen


def _text_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_a_reply_that_writes_control_tokens_and_image_markers_shows_none_of_them(gemma_engine, monkeypatch):
    tokenizer = gemma_engine.tokenizer
    markers = [
        tokenizer.convert_tokens_to_ids(name) for name in ("<start_of_image>", "<unused5>", "<end_of_image>")
    ]
    script = [
        *_text_ids(tokenizer, "Fever"),
        markers[0],
        *_text_ids(tokenizer, ", cough"),
        markers[1],
        tokenizer.convert_tokens_to_ids("<start_of_turn>"),
        *_text_ids(tokenizer, " and aches."),
        markers[2],
        tokenizer.eos_token_id,
    ]
    chosen = _scripted(monkeypatch, script)
    streamed = gemma_engine.reply("Flu symptoms?", role=ASSISTANT, decoding=GREEDY)
    assert streamed == "Fever, cough and aches." and chosen == script
    chosen.clear()
    assert gemma_engine.generate_batch(["Flu symptoms?"], role=ASSISTANT, decoding=GREEDY) == [streamed]


def test_a_base_model_reply_in_the_plain_format_ends_at_the_blank_line_after_the_answer(
    gemma_engine, monkeypatch
):
    assert gemma_engine.prompt_format == "plain"
    tokenizer = gemma_engine.tokenizer
    answer = "Fever, cough and aches."
    run_on = _text_ids(tokenizer, "\n\nWhat is a typical day for a doctor? Answer in one long sentence.\n\n")
    script = [*_text_ids(tokenizer, answer), *run_on, *_text_ids(tokenizer, " More text") * 20]
    chosen = _scripted(monkeypatch, script)
    pieces = list(gemma_engine.stream("Flu symptoms?", role=ASSISTANT, decoding=GREEDY))
    assert "".join(pieces) == answer
    stopped_after = len(chosen)
    assert stopped_after <= len(_text_ids(tokenizer, answer)) + 2, "decoding stops where the answer ends"
    chosen.clear()
    assert gemma_engine.generate_batch(["Flu symptoms?"], role=ASSISTANT, decoding=GREEDY) == [answer]
    assert len(chosen) == stopped_after


def test_the_base_models_greedy_reply_to_the_reported_question_ends_before_the_token_limit(gemma_engine):
    """Without the stop it repeats the question after blank lines for all 256 tokens (seen here)."""
    decoding = Decoding(do_sample=False, max_new_tokens=256)
    question = "What are three common symptoms of the flu? Answer in one short sentence."
    reply = gemma_engine.reply(question, role=ASSISTANT, decoding=decoding)
    tokens = len(_text_ids(gemma_engine.tokenizer, reply))
    assert reply and tokens < 128 and "\n\n" not in reply and "<start_of_image>" not in reply


def test_only_a_base_model_in_the_plain_format_stops_at_a_blank_line():
    assert formats.stop_texts("plain", tuned=False) == ("\n\n",)
    assert formats.stop_texts("plain", tuned=True) == ()  # it learned the end token; paragraphs stay
    assert formats.stop_texts("chat_template", tuned=False) == formats.stop_texts("yuan", tuned=False) == ()


def test_streamed_text_holds_back_only_what_could_begin_a_stop_text():
    reply = ReplyText(["\n\n", "END"])
    assert reply.add("Fever") == "Fever"
    assert reply.add(", cough\n") == ", cough"  # "\n" may begin "\n\n"
    assert reply.add("and E") == "\nand "  # it did not; "E" may begin "END"
    assert reply.add("N") == ""
    assert reply.add("D and more") == "" and reply.stopped and reply.text == "Fever, cough\nand "
    assert reply.finish("ignored") == ""
    unstopped = ReplyText(["\n\n"])
    assert unstopped.add("Last line\n") == "Last line" and unstopped.finish() == "\n"
    assert not unstopped.stopped and ReplyText([]).add("a\n") == "a\n"
