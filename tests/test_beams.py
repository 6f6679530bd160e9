"""Beam search as part of a role's decoding preset: the schema's limits, the engine's replies held to
transformers' own beam search, and every path that answers (stream, batches, the API) honouring it."""

import pytest

from core.errors import UserError
from engine import formats
from engine.generation import ChatEngine
from engine.roles import TRANSLATOR, Decoding, check_decoding
from tests.conftest import make_adapter, register_adapter

BEAMS = Decoding(do_sample=False, max_new_tokens=16, num_beams=4, length_penalty=1.0)
TEXTS = ("The patient has a fever.", "Take two tablets daily after meals, with water.", "Insulin.")


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return ChatEngine(str(tiny_model_dir), device="cpu")


@pytest.fixture
def adapter(db, tiny_model_dir, engine, tmp_path):
    folder = make_adapter(tiny_model_dir, tmp_path / "beamed", seed=5)
    return register_adapter(db, "beamed", folder, engine.base_model_id, role="translator")


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"num_beams": 0}, "beams must be a whole number from 1 to 8"),
        ({"num_beams": 9}, "beams must be a whole number from 1 to 8"),
        ({"num_beams": 2.5}, "beams must be a whole number from 1 to 8"),
        ({"length_penalty": -1.0}, "length penalty must be at least 0 and at most 3"),
        ({"num_beams": 4, "do_sample": True}, "does not go with sampling"),
    ],
)
def test_beams_outside_the_schema_are_refused(changes, problem):
    with pytest.raises(UserError, match=problem):
        check_decoding(BEAMS.with_changes(**changes))


def test_the_preset_says_it_searches_with_beams():
    assert "4 beams" in BEAMS.describe() and BEAMS.beams
    assert not BEAMS.with_changes(do_sample=True).beams and not BEAMS.with_changes(num_beams=1).beams


def _reference(engine, prompt: list[int], decoding: Decoding, model=None) -> str:
    """transformers' beam search called directly, as its documentation shows."""
    import torch

    model = model or engine.model
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        output = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            num_beams=decoding.num_beams,
            length_penalty=decoding.length_penalty,
            early_stopping=True,
            do_sample=False,
            max_new_tokens=decoding.max_new_tokens,
            eos_token_id=formats.stop_token_ids(engine.tokenizer, engine.prompt_format, engine.model),
            pad_token_id=engine.tokenizer.pad_token_id,
        )
    return engine.tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)


def test_a_reply_with_beams_is_what_transformers_beam_search_gives(engine):
    greedy = BEAMS.with_changes(num_beams=1)
    differs = 0
    for text in TEXTS:
        prompt = engine.prompt_ids(TRANSLATOR, text)
        expected = _reference(engine, prompt, BEAMS)
        assert engine.reply(text, role=TRANSLATOR, decoding=BEAMS) == expected
        differs += engine.reply(text, role=TRANSLATOR, decoding=greedy) != expected
    assert differs, "four beams chose the greedy answer for every text: the test shows nothing"


def test_batched_beams_answer_each_text_as_alone_and_honour_each_limit(engine):
    alone = [engine.reply(text, role=TRANSLATOR, decoding=BEAMS) for text in TEXTS]
    batched = engine.generate_batch(TEXTS, role=TRANSLATOR, decoding=BEAMS, batch_size=3)
    assert batched == [reply.strip() for reply in alone]
    short = engine.generate_batch(TEXTS, role=TRANSLATOR, decoding=BEAMS, max_new_tokens=[3, 16, 5])
    lengths = [len(engine.tokenizer.encode(reply, add_special_tokens=False)) for reply in short]
    assert lengths[0] <= 3 + 1 and lengths[2] <= 5 + 1  # a re-encoded reply may split one token in two


def test_an_adapter_searches_with_its_own_weights(engine, adapter, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    text = TEXTS[1]
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter.path)
    expected = _reference(
        engine, engine.prompt_ids(TRANSLATOR, text, adapter=adapter), BEAMS, reference.eval()
    )
    assert engine.reply(text, role=TRANSLATOR, adapter=adapter, decoding=BEAMS) == expected
    assert engine.reply(text, role=TRANSLATOR, decoding=BEAMS) != expected


def test_the_api_scheduler_answers_a_beam_request_whole_beside_a_sampled_one(engine):
    import threading

    from serving.scheduler import Generation, Scheduler

    scheduler = Scheduler(engine)
    try:
        results = {}
        done = threading.Event()

        def request(name: str, decoding: Decoding, text: str) -> Generation:
            pieces = []
            prompt = engine.prompt_ids(TRANSLATOR, text)
            stops = formats.stop_token_ids(engine.tokenizer, engine.prompt_format, engine.model)

            def end(reason, tokens):
                results[name] = ("".join(pieces), reason, tokens)
                if len(results) == 2:
                    done.set()

            return Generation(
                prompt=prompt,
                adapter=None,
                decoding=decoding,
                max_tokens=decoding.max_new_tokens,
                stop_ids=frozenset(stops),
                on_text=pieces.append,
                on_end=end,
                on_error=lambda message: results.setdefault(name, ("", message, 0)) and done.set(),
            )

        sampled = Decoding(do_sample=True, temperature=0.7, max_new_tokens=12)
        scheduler.submit(request("sampled", sampled, TEXTS[0]))
        scheduler.submit(request("beams", BEAMS, TEXTS[1]))
        assert done.wait(120), results
    finally:
        scheduler.close()
    text, reason, tokens = results["beams"]
    assert text == engine.reply(TEXTS[1], role=TRANSLATOR, decoding=BEAMS) and reason in ("stop", "length")
    assert results["sampled"][1] in ("stop", "length") and results["sampled"][2] > 0


def test_an_evaluation_with_beams_is_stored_apart_from_the_greedy_one(db, adapter, engine, tmp_path):
    import json

    from registry import evaluations
    from studio.roles import save_custom_role
    from training.evaluation.evaluate import evaluate

    for name, decoding in (("searcher", BEAMS), ("greedy-translator", BEAMS.with_changes(num_beams=1))):
        fields = {**TRANSLATOR.as_dict(), "name": name, "builtin": False, "decoding": decoding}
        save_custom_role(db, TRANSLATOR.__class__(**fields))
    data = tmp_path / "dev.jsonl"
    rows = [{"input": text, "output": "患者发烧。"} for text in TEXTS]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    greedy, _ = evaluate(
        db, data=str(data), adapter_name="beamed", role_name="greedy-translator", engine=engine
    )
    searched, reused = evaluate(
        db, data=str(data), adapter_name="beamed", role_name="searcher", engine=engine
    )
    assert not reused and (greedy.decoding, searched.decoding) == ("greedy", BEAMS.key)
    assert greedy.predictions_path != searched.predictions_path
    predictions = [json.loads(line)["output"] for line in open(searched.predictions_path, encoding="utf-8")]
    assert predictions == engine.generate_batch(TEXTS, role=TRANSLATOR, adapter=adapter, decoding=BEAMS)
    again, reused = evaluate(db, data=str(data), adapter_name="beamed", role_name="searcher", engine=engine)
    assert reused and again.id == searched.id
    assert evaluations.base_counterpart(db, searched) is None  # the base was not scored with beams
    translator, _ = evaluate(db, data=str(data), adapter_name="beamed", engine=engine)
    assert translator.decoding == "beams=2,length_penalty=1", (
        "the translator's preset searches with two beams"
    )


def _stepped(engine, prompt: list[int], decoding: Decoding, stops) -> tuple[list[int], list[list[int]]]:
    """engine.beam_steps driven by hand on one prompt: the best hypothesis and what had settled
    after each step."""
    import torch

    from engine.beam_steps import BeamSteps

    search = BeamSteps.for_decoding(prompt, decoding, stops)
    settled = []
    with torch.inference_mode():
        output = engine.model(input_ids=torch.tensor([prompt]), use_cache=True)
        cache, logits = output.past_key_values, output.logits[:, -1].repeat(decoding.num_beams, 1)
        cache.batch_repeat_interleave(decoding.num_beams)
        while (going_on := search.advance(logits)) is not None:
            parents, tokens = going_on
            settled.append(search.settled())
            cache.batch_select_indices(torch.tensor(parents))
            output = engine.model(input_ids=torch.tensor(tokens)[:, None], past_key_values=cache)
            cache, logits = output.past_key_values, output.logits[:, -1]
    return search.best(), settled


@pytest.mark.parametrize(
    ("beams", "length_penalty", "repetition_penalty", "limit"),
    [(2, 1.0, 1.0, 12), (3, 0.0, 1.1, 10), (4, 2.0, 1.0, 6), (4, 1.0, 1.3, 16)],
)
def test_beam_steps_give_transformers_beam_search_and_settle_only_what_it_keeps(
    engine, beams, length_penalty, repetition_penalty, limit
):
    decoding = BEAMS.with_changes(
        num_beams=beams,
        length_penalty=length_penalty,
        repetition_penalty=repetition_penalty,
        max_new_tokens=limit,
    )
    stops = formats.stop_token_ids(engine.tokenizer, engine.prompt_format, engine.model)
    for text in TEXTS:
        prompt = engine.prompt_ids(TRANSLATOR, text)
        expected = engine.beam_search([prompt], adapter=None, decoding=decoding, stop_ids=stops)[0]
        best, settled = _stepped(engine, prompt, decoding, stops)
        assert [t for t in best if t not in stops] == expected and len(expected) <= limit
        for earlier, later in zip(settled, [*settled[1:], best], strict=True):
            assert later[: len(earlier)] == earlier, "a settled token changed"


def test_with_the_translator_s_two_beams_tokens_settle_and_the_chat_stream_sends_them(engine):
    stops = formats.stop_token_ids(engine.tokenizer, engine.prompt_format, engine.model)
    decoding = TRANSLATOR.decoding.with_changes(max_new_tokens=12)
    assert decoding.num_beams == 2
    for text in TEXTS:
        best, settled = _stepped(engine, engine.prompt_ids(TRANSLATOR, text), decoding, stops)
        assert len(settled) > 1 and settled[-2], f"nothing of {best} settled before the last step"
        pieces = list(engine.stream(text, role=TRANSLATOR, decoding=decoding))
        assert len(pieces) > 1, f"the reply {pieces} came whole"


def _beam_model(request, tiny_model_dir, gemma_like_dir, db, tmp_path):
    """The engine and two translator adapters of the tiny Llama or the tiny Gemma-3 (sliding window)."""
    folder = {"llama": tiny_model_dir, "gemma": gemma_like_dir}[request.param]
    engine = ChatEngine(f"local:{folder}", device="cpu")
    adapters = [
        register_adapter(
            db,
            f"{request.param}-{seed}",
            make_adapter(folder, tmp_path / f"{request.param}-{seed}", seed=seed),
            engine.base_model_id,
            role="translator",
        )
        for seed in (21, 22)
    ]
    for adapter in adapters:
        engine.ensure_adapter(adapter)
    return engine, adapters


@pytest.fixture(params=["llama", "gemma"])
def beam_model(request, tiny_model_dir, gemma_like_dir, db, tmp_path):
    return _beam_model(request, tiny_model_dir, gemma_like_dir, db, tmp_path)


def test_the_api_scheduler_steps_beams_beside_running_requests_and_streams_what_settles(beam_model):
    """Beam requests of two adapters join a batch that is already answering a greedy request (on the
    tiny Gemma-3, past its sliding window): each reply is its search alone, their beams ran as rows of
    one batch, and the settled text went out before the search ended."""
    import threading

    from serving.scheduler import Generation, Scheduler

    engine, adapters = beam_model
    stops = frozenset(formats.stop_token_ids(engine.tokenizer, engine.prompt_format, engine.model))
    greedy = BEAMS.with_changes(num_beams=1, max_new_tokens=40)
    beams = BEAMS.with_changes(num_beams=3, max_new_tokens=24, repetition_penalty=1.1)
    asks = [(None, greedy, TEXTS[0]), (adapters[0], beams, TEXTS[1]), (adapters[1], beams, TEXTS[2])]
    asks.append((None, beams.with_changes(num_beams=2), TEXTS[1]))
    pieces = {index: [] for index in range(len(asks))}
    ended, all_ended, started = {}, threading.Event(), threading.Event()

    def generation(index, adapter, decoding, text):
        def on_text(piece):
            pieces[index].append(piece)
            started.set()

        def on_end(reason, tokens):
            ended[index] = (reason, tokens)
            if len(ended) == len(asks):
                all_ended.set()

        return Generation(
            prompt=engine.prompt_ids(TRANSLATOR, text, adapter=adapter),
            adapter=adapter,
            decoding=decoding,
            max_tokens=decoding.max_new_tokens,
            stop_ids=stops,
            on_text=on_text,
            on_end=on_end,
            on_error=lambda message: pytest.fail(message),
        )

    scheduler = Scheduler(engine)
    try:
        scheduler.submit(generation(0, *asks[0]))
        assert started.wait(60)
        for index, ask in enumerate(asks[1:], 1):
            scheduler.submit(generation(index, *ask))
        assert all_ended.wait(120), ended
    finally:
        scheduler.close()
    for index, (adapter, decoding, text) in enumerate(asks):
        prompt = engine.prompt_ids(TRANSLATOR, text, adapter=adapter)
        alone = engine.beam_search([prompt], adapter=adapter, decoding=decoding, stop_ids=stops)[0]
        with engine.tokenizer_lock:
            expected = engine.tokenizer.decode(alone, skip_special_tokens=True)
        assert "".join(pieces[index]) == expected and ended[index][1] == len(alone), index
    assert scheduler.widest >= 1 + 3 + 3 + 2, "the beams did not run as rows of one batch"
    assert max(len(pieces[index]) for index in (1, 2, 3)) > 1, "every beam reply came whole"
    assert len({"".join(pieces[1]), "".join(pieces[2])}) == 2, "the adapters answered alike"


def test_beam_requests_take_a_row_per_beam_and_wait_for_room_in_the_batch(engine):
    import threading

    from serving.scheduler import Generation, Scheduler

    stops = frozenset(formats.stop_token_ids(engine.tokenizer, engine.prompt_format, engine.model))
    decoding = BEAMS.with_changes(num_beams=2, max_new_tokens=10)
    ended, all_ended = {}, threading.Event()

    def on_end(index, reason, tokens):
        ended[index] = tokens
        if len(ended) == len(TEXTS):
            all_ended.set()

    scheduler = Scheduler(engine, max_batch=4)
    try:
        for index, text in enumerate(TEXTS):  # 3 requests of 2 beams: the third waits for room
            scheduler.submit(
                Generation(
                    prompt=engine.prompt_ids(TRANSLATOR, text),
                    adapter=None,
                    decoding=decoding,
                    max_tokens=10,
                    stop_ids=stops,
                    on_text=lambda piece: None,
                    on_end=lambda reason, tokens, i=index: on_end(i, reason, tokens),
                    on_error=lambda message: pytest.fail(message),
                )
            )
        assert all_ended.wait(120), ended
    finally:
        scheduler.close()
    assert scheduler.widest == 4
    prompts = [engine.prompt_ids(TRANSLATOR, text) for text in TEXTS]
    alone = [engine.beam_search([p], adapter=None, decoding=decoding, stop_ids=stops)[0] for p in prompts]
    assert [ended[i] for i in range(len(TEXTS))] == [len(tokens) for tokens in alone]
