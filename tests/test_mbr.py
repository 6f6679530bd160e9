"""Minimum-Bayes-risk decoding: its choice held to the definition, the engine's candidates sampled as
transformers samples them, the API's MBR requests as rows of the running batch (each answering as
alone for its seed), and the API's extension field refused where it does not apply."""

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


def _run(engine, asks) -> tuple[dict, Scheduler]:
    """Each ask (adapter, decoding, text, seed) submitted at once to a new scheduler: its pieces of
    text, finish reason and token count."""
    stops = frozenset(formats.stop_token_ids(engine.tokenizer, engine.prompt_format, engine.model))
    results, all_ended = {}, threading.Event()
    pieces = {index: [] for index in range(len(asks))}

    def on_end(index, reason, tokens):
        results[index] = ("".join(pieces[index]), reason, tokens, len(pieces[index]))
        if len(results) == len(asks):
            all_ended.set()

    scheduler = Scheduler(engine)
    try:
        for index, (adapter, decoding, text, seed) in enumerate(asks):
            scheduler.submit(
                Generation(
                    prompt=engine.prompt_ids(TRANSLATOR, text, adapter=adapter),
                    adapter=adapter,
                    decoding=decoding,
                    max_tokens=decoding.max_new_tokens,
                    stop_ids=stops,
                    on_text=pieces[index].append,
                    on_end=lambda reason, tokens, i=index: on_end(i, reason, tokens),
                    on_error=lambda message: pytest.fail(message),
                    seed=seed,
                )
            )
        assert all_ended.wait(120), results
    finally:
        scheduler.close()
    return results, scheduler


def test_mbr_requests_are_rows_of_the_running_batch_and_answer_as_alone_for_their_seed(
    db, engine, tiny_model_dir, tmp_path
):
    adapters = [
        register_adapter(
            db,
            f"m{seed}",
            make_adapter(tiny_model_dir, tmp_path / f"m{seed}", seed=seed),
            engine.base_model_id,
            "translator",
        )
        for seed in (31, 32)
    ]
    for adapter in adapters:
        engine.ensure_adapter(adapter)
    greedy = Decoding(do_sample=False, max_new_tokens=12)
    asks = [
        (None, greedy, TEXTS[0], None),
        (adapters[0], MBR, TEXTS[1], 5),
        (adapters[1], MBR, TEXTS[1], 5),
        (None, MBR, TEXTS[2], None),
    ]
    together, scheduler = _run(engine, asks)
    assert scheduler.widest >= 1 + 3 * MBR.mbr_samples - 3, "the candidates did not run as rows of one batch"
    for index, ask in enumerate(asks):
        alone, _ = _run(engine, [ask])
        text, reason, tokens, _ = together[index]
        assert (text, reason, tokens) == alone[0][:3], index
        assert reason in ("stop", "length") and tokens <= 12
    assert together[1][0] != together[2][0], "the two adapters' candidates answered alike"
    other_seed, _ = _run(engine, [(adapters[0], MBR, TEXTS[1], 6)])
    same_seed, _ = _run(engine, [(adapters[0], MBR, TEXTS[1], 5)])
    assert same_seed[0][:3] == together[1][:3]
    assert other_seed[0][:3] != together[1][:3] or other_seed[0][2] <= 1, "the seed changed nothing"


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
