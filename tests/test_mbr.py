"""Minimum-Bayes-risk decoding: its choice held to the definition, the engine's candidates sampled as
transformers samples them, the API's MBR requests searched together, a mixed-adapter search, and the
API's extension field refused where it does not apply."""

import threading

import openai
import pytest
import torch
from sacrebleu.metrics import CHRF

from engine import formats
from engine.decoding import mbr_choice
from engine.generation import ChatEngine
from engine.roles import TRANSLATOR, Decoding
from serving.scheduler import Generation, Scheduler
from tests.conftest import ApiServer, make_adapter, register_adapter

MBR = Decoding(do_sample=False, max_new_tokens=12, mbr_samples=4, temperature=0.9, top_p=0.95)
BEAMS = Decoding(do_sample=False, max_new_tokens=12, num_beams=2)
TEXTS = ("The patient has a fever.", "Take two tablets daily.", "Insulin.", "Rest is advised.")


def test_the_choice_is_the_candidate_with_the_highest_mean_chrf_against_the_others():
    candidates = ["患者发热。", "患者发烧。", "病人发热。", "今天天气很好。"]
    chrf = CHRF()
    mean = [
        sum(chrf.sentence_score(c, [o]).score for j, o in enumerate(candidates) if j != i) / 3
        for i, c in enumerate(candidates)
    ]
    assert mbr_choice(candidates) == mean.index(max(mean)) == 0
    assert mbr_choice(["x y z", "a b c", "a b c"]) == 1  # the first of two equals
    assert mbr_choice(["only"]) == 0
    assert mbr_choice(["z", "q"]) == 0  # nothing agrees: the first


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return ChatEngine(str(tiny_model_dir), device="cpu")


def test_the_engine_keeps_the_mbr_choice_among_the_candidates_it_sampled(engine):
    from transformers import GenerationConfig

    prompt = engine.prompt_ids(TRANSLATOR, TEXTS[0])
    stops = sorted(formats.stop_token_ids(engine.tokenizer, engine.prompt_format, engine.model))
    (chosen,) = engine.mbr_search([prompt], adapter=None, decoding=MBR, stop_ids=stops, seed=3)
    torch.manual_seed(3)
    config = GenerationConfig(
        do_sample=True,
        temperature=0.9,
        top_p=0.95,
        top_k=0,
        num_return_sequences=4,
        max_new_tokens=12,
        eos_token_id=stops,
        pad_token_id=engine.tokenizer.pad_token_id,
    )
    ids = torch.tensor([prompt])
    output = engine.model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config
    )
    candidates = []
    for row in output[:, len(prompt) :].tolist():
        ends = [at for at, token in enumerate(row) if token in stops]
        candidates.append(row[: min([*ends[:1], 12])])
    texts = [text.strip() for text in engine.tokenizer.batch_decode(candidates, skip_special_tokens=True)]
    assert len(set(texts)) > 1, "the candidates are all the same: the test shows nothing"
    assert chosen == candidates[mbr_choice(texts)]
    again = engine.mbr_search([prompt], adapter=None, decoding=MBR, stop_ids=stops, seed=3)
    assert again == [chosen]
    assert engine.reply(TEXTS[0], role=TRANSLATOR, decoding=MBR) == engine.reply(
        TEXTS[0], role=TRANSLATOR, decoding=MBR
    )


def test_mbr_requests_of_one_adapter_are_searched_together_in_one_batch(engine):
    decoding = MBR
    stops = frozenset(formats.stop_token_ids(engine.tokenizer, engine.prompt_format, engine.model))
    prompts = [engine.prompt_ids(TRANSLATOR, text) for text in TEXTS]
    ended = {}
    generations = [
        Generation(
            prompt=prompt,
            adapter=None,
            decoding=decoding,
            max_tokens=12,
            stop_ids=stops,
            on_text=lambda piece: None,
            on_end=lambda reason, tokens, i=i: ended.setdefault(i, (reason, tokens)),
            on_error=lambda message: pytest.fail(message),
        )
        for i, prompt in enumerate(prompts)
    ]
    scheduler = Scheduler(engine)
    try:
        scheduler._search_together(generations)
    finally:
        scheduler.close()
    assert scheduler.widest == 4 and sorted(ended) == [0, 1, 2, 3]
    together = engine.search(
        prompts, adapter=None, decoding=decoding, stop_ids=stops, limits=[12] * 4, seed=0
    )
    assert [ended[i][1] for i in range(4)] == [len(tokens) for tokens in together]


def test_the_api_takes_mbr_samples_for_a_translator_and_refuses_it_elsewhere(
    db, engine, tiny_model_dir, tmp_path
):
    register_adapter(
        db, "t", make_adapter(tiny_model_dir, tmp_path / "t", seed=2), engine.base_model_id, "translator"
    )
    with ApiServer(engine) as running:
        client = running.client()
        ask = {"messages": [{"role": "user", "content": TEXTS[0]}], "max_tokens": 8}
        reply = client.chat.completions.create(model="t", extra_body={"mbr_samples": 4}, **ask)
        assert reply.choices[0].finish_reason in ("stop", "length")
        again = client.chat.completions.create(model="t", extra_body={"mbr_samples": 4}, **ask)
        assert again.choices[0].message.content == reply.choices[0].message.content  # seeded
        for model, extra, message in [
            (engine.base_model_id, {"mbr_samples": 4}, "applies to translator adapters"),
            ("t", {"mbr_samples": 1}, "`mbr_samples` must be null or 2 to 32"),
            ("t", {"mbr_samples": 4, "temperature": 0}, "would make them all the same"),
        ]:
            with pytest.raises(openai.BadRequestError, match=message) as refused:
                client.chat.completions.create(model=model, extra_body=extra, **ask)
            assert refused.value.body["param"] == "mbr_samples"
        results = []

        def call():
            results.append(client.chat.completions.create(model="t", temperature=0, **ask))

        threads = [threading.Thread(target=call) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 6


def test_an_evaluation_with_mbr_is_stored_apart_and_a_bad_choice_is_refused(
    db, engine, tiny_model_dir, tmp_path, monkeypatch
):
    from core.errors import UserError
    from core.home import PROJECT_ROOT
    from training.evaluation.evaluate import evaluate, parse_decoding

    monkeypatch.setenv("TRANSLATOR_LANG", "en")
    register_adapter(
        db, "t", make_adapter(tiny_model_dir, tmp_path / "t", seed=2), engine.base_model_id, "translator"
    )
    common = {"data": str(PROJECT_ROOT / "data" / "translator_sample.jsonl"), "adapter_name": "t", "limit": 3}
    greedy, _ = evaluate(db, **common, engine=engine, decoding="greedy")
    mbr, cached = evaluate(db, **common, engine=engine, decoding="mbr=4,0.9,0.95")
    assert (greedy.decoding, mbr.decoding, cached) == ("greedy", "mbr=4,temperature=0.9,top_p=0.95", False)
    assert "-mbr4-t0.9-p0.95" in mbr.predictions_path
    assert parse_decoding("beams=3", TRANSLATOR.decoding).key == "beams=3,length_penalty=1"
    for wrong in ("mbr", "beams=x", "sampled", "greedy=2"):
        with pytest.raises(UserError, match="Unknown decoding"):
            parse_decoding(wrong, TRANSLATOR.decoding)


def test_a_search_of_prompts_with_different_adapters_answers_each_with_its_own(
    db, engine, tiny_model_dir, tmp_path
):
    adapters = [
        register_adapter(
            db,
            f"t{seed}",
            make_adapter(tiny_model_dir, tmp_path / f"t{seed}", seed=seed),
            engine.base_model_id,
            "translator",
        )
        for seed in (11, 12)
    ]
    for adapter in adapters:
        engine.ensure_adapter(adapter)
    stops = frozenset(formats.stop_token_ids(engine.tokenizer, engine.prompt_format, engine.model))
    prompt = engine.prompt_ids(TRANSLATOR, TEXTS[1])
    chosen = [*adapters, None]
    alone = [
        engine.search([prompt], adapter=a, decoding=BEAMS, stop_ids=stops, limits=[12])[0] for a in chosen
    ]
    mixed = engine.search(
        [prompt] * 3, adapter=None, decoding=BEAMS, stop_ids=stops, limits=[12] * 3, adapters=chosen
    )
    assert mixed == alone and len({tuple(tokens) for tokens in alone}) > 1  # the adapters answer differently
