"""One resident base model, adapters chosen per request, safe under concurrency."""

import threading

import pytest

from core.errors import UserError
from engine.generation import ChatEngine
from engine.roles import ASSISTANT, Decoding
from tests.conftest import adapter_row, make_adapter, register_adapter

GREEDY = Decoding(do_sample=False, max_new_tokens=12)


@pytest.fixture(scope="module")
def adapter_folders(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {
        "alpha": make_adapter(tiny_model_dir, root / "alpha", seed=1),
        "beta": make_adapter(
            tiny_model_dir, root / "beta", seed=2, targets=("q_proj", "v_proj", "down_proj")
        ),
    }


@pytest.fixture
def engine_and_adapters(db, tiny_model_dir, adapter_folders):
    engine = ChatEngine(str(tiny_model_dir), device="cpu")
    rows = {
        name: register_adapter(db, name, folder, engine.base_model_id)
        for name, folder in adapter_folders.items()
    }
    return engine, rows


def _reply(engine, adapter, text="The patient has a fever."):
    return engine.reply(text, role=ASSISTANT, adapter=adapter, decoding=GREEDY)


def test_replies_stream_in_pieces(engine_and_adapters):
    engine, _ = engine_and_adapters
    pieces = list(engine.stream("Hello there", role=ASSISTANT, decoding=GREEDY))
    assert len(pieces) > 1 and "".join(pieces)


def _generate_settings(decoding: Decoding) -> dict:
    """`generate()` arguments for a decoding preset: the reference the engine's choice is held to."""
    settings = {
        "max_new_tokens": decoding.max_new_tokens,
        "repetition_penalty": decoding.repetition_penalty,
        "do_sample": decoding.do_sample,
    }
    if decoding.do_sample:
        return settings | {"temperature": decoding.temperature, "top_p": decoding.top_p}
    # the model's generation_config may carry sampling defaults; greedy must ignore them
    return settings | {"temperature": None, "top_p": None, "top_k": None}


@pytest.mark.parametrize(
    "decoding",
    [
        Decoding(do_sample=False, max_new_tokens=20, repetition_penalty=1.1),
        Decoding(do_sample=True, temperature=0.5, top_p=0.9, repetition_penalty=1.1, max_new_tokens=20),
    ],
    ids=["greedy", "persona-sampling"],
)
def test_streaming_picks_tokens_exactly_as_generate_does(engine_and_adapters, decoding):
    import torch

    from engine import formats

    engine, rows = engine_and_adapters
    text = "The patient has a fever."
    ids = torch.tensor([engine.prompt_ids(ASSISTANT, text)])
    torch.manual_seed(7)
    with torch.inference_mode():
        output = engine.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            eos_token_id=formats.stop_token_ids(engine.tokenizer, engine.prompt_format, engine.model),
            pad_token_id=engine.tokenizer.pad_token_id,
            **_generate_settings(decoding),
        )
    expected = engine.tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)
    torch.manual_seed(7)
    assert engine.reply(text, role=ASSISTANT, decoding=decoding) == expected


def test_a_reader_that_stops_reading_stops_the_computation(engine_and_adapters, monkeypatch):
    engine, rows = engine_and_adapters
    engine.ensure_adapter(rows["alpha"])
    calls = []
    forward = engine.model.forward
    monkeypatch.setattr(engine.model, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    reply = engine.stream("Hello there", role=ASSISTANT, decoding=GREEDY.with_changes(max_new_tokens=200))
    next(reply)
    reply.close()
    steps = len(calls)
    assert steps < 20
    engine.unload_adapter("alpha")  # the exclusive lock is free at once: no reply holds it
    assert "alpha" not in engine.loaded_adapters
    assert len(calls) == steps


def test_each_adapter_answers_differently_and_the_base_answers_with_adapters_off(engine_and_adapters):
    engine, rows = engine_and_adapters
    base_before = _reply(engine, None)
    alpha, beta = _reply(engine, rows["alpha"]), _reply(engine, rows["beta"])
    assert len({base_before, alpha, beta}) == 3, "adapters must change the output"
    assert _reply(engine, None) == base_before, "loading adapters must not change the base model's answer"
    assert engine.loaded_adapters == ["alpha", "beta"]


def test_logits_differ_per_adapter_and_match_the_base_with_adapter_off(engine_and_adapters):
    import torch

    engine, rows = engine_and_adapters
    ids = engine.prompt_ids(ASSISTANT, "fever")
    base = engine.next_token_logits(ids)
    engine.ensure_adapter(rows["alpha"])
    assert torch.equal(engine.next_token_logits(ids), base)
    assert not torch.allclose(engine.next_token_logits(ids, rows["alpha"]), base)


def test_concurrent_generations_with_different_adapters_each_get_their_own(engine_and_adapters):
    engine, rows = engine_and_adapters
    prompts = {"alpha": "The patient has a fever.", "beta": "Blood pressure is high.", None: "Hello"}
    alone = {name: _reply(engine, rows.get(name), text) for name, text in prompts.items()}
    assert len(set(alone.values())) == 3
    results, errors = {}, []
    barrier = threading.Barrier(6)

    def chat(name, slot):
        try:
            barrier.wait()
            results[(name, slot)] = _reply(engine, rows.get(name), prompts[name])
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=chat, args=(name, slot)) for name in prompts for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert results == {(name, slot): alone[name] for name in prompts for slot in range(2)}


def test_an_adapter_from_another_base_is_refused_naming_both(db, engine_and_adapters, adapter_folders):
    engine, _ = engine_and_adapters
    foreign = register_adapter(
        db, "foreign", adapter_folders["alpha"], "modelscope:IEITYuan/Yuan2-2B-Mars-hf"
    )
    with pytest.raises(UserError) as raised:
        _reply(engine, foreign)
    assert "modelscope:IEITYuan/Yuan2-2B-Mars-hf" in str(raised.value) and engine.base_model_id in str(
        raised.value
    )


def test_pickle_adapters_and_missing_folders_are_refused(db, home, engine_and_adapters, adapter_folders):
    import shutil

    engine, _ = engine_and_adapters
    pickled = home / "pickled"
    shutil.copytree(adapter_folders["alpha"], pickled)
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(UserError, match="only safetensors adapters are loaded"):
        register_adapter(db, "pickled", pickled, engine.base_model_id)
    with pytest.raises(UserError, match="missing or incomplete"):
        register_adapter(db, "gone", home / "nowhere", engine.base_model_id)
    # rows registered before these checks existed are refused when chat would load them
    for name, folder, message in (
        ("pickled", pickled, "only safetensors adapters are loaded"),
        ("gone", home / "nowhere", "missing or incomplete"),
    ):
        row = adapter_row(name=name, path=str(folder), base_model=engine.base_model_id)
        with pytest.raises(UserError, match=message):
            _reply(engine, row)


def test_unloading_an_adapter_frees_the_name(engine_and_adapters):
    engine, rows = engine_and_adapters
    first = _reply(engine, rows["alpha"])
    engine.unload_adapter("alpha")
    assert "alpha" not in engine.loaded_adapters
    assert _reply(engine, rows["alpha"]) == first


def test_an_adapter_retrained_under_the_same_name_and_folder_is_reloaded(
    db, home, engine_and_adapters, tiny_model_dir
):
    import shutil

    from registry import adapters
    from studio import adapters as studio_adapters

    engine, _ = engine_and_adapters
    folder = make_adapter(tiny_model_dir, home / "adapters" / "reused", seed=5)
    first = _reply(engine, register_adapter(db, "reused", folder, engine.base_model_id))
    studio_adapters.delete(db, "reused")
    shutil.rmtree(folder, ignore_errors=True)
    make_adapter(tiny_model_dir, folder, seed=6)
    second = _reply(engine, register_adapter(db, "reused", folder, engine.base_model_id))
    assert second != first
    assert second == _reply(ChatEngine(str(tiny_model_dir), device="cpu"), adapters.get(db, "reused"))


def test_an_adapter_with_whole_modules_is_refused_on_a_llama_base(db, home, tiny_model_dir):
    from tests.conftest import assert_whole_module_adapters_are_refused

    assert_whole_module_adapters_are_refused(db, tiny_model_dir, home / "whole", f"local:{tiny_model_dir}")


def test_a_mixed_batch_computes_exactly_what_peft_computes(
    engine_and_adapters, adapter_folders, tiny_model_dir
):
    """The engine's faster mixed-batch LoRA (rows grouped once per pass, no module calls) against
    PEFT's own `adapter_names` path on an untouched copy of the model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    engine, rows = engine_and_adapters
    for row in rows.values():
        engine.ensure_adapter(row)
    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter_folders["alpha"], adapter_name="alpha"
    )
    reference.load_adapter(adapter_folders["beta"], adapter_name="beta")
    reference.eval()
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (5, 9))
    order = [None, rows["alpha"], rows["beta"], rows["alpha"], None]
    with engine.answering_rows(order):
        ours = engine.model(input_ids=ids).logits
    with torch.inference_mode():
        theirs = reference(
            input_ids=ids, adapter_names=["__base__", "alpha", "beta", "alpha", "__base__"]
        ).logits
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)
    assert not torch.allclose(ours[1], ours[2], atol=1e-3)  # the adapters do differ
    with engine.answering_rows([rows["beta"]] * 5):  # one adapter for every row: no grouping at all
        alone = engine.model(input_ids=ids).logits
    assert torch.allclose(alone[2], ours[2], atol=1e-6, rtol=0)


def test_the_chat_command_answers_with_an_adapter_and_refuses_bad_input_in_one_line(
    engine_and_adapters, tiny_model_dir, capsys
):
    """`python -m studio.chat`, called in this process (the subprocess path is in the trainer tests)."""
    from studio import chat

    engine, rows = engine_and_adapters
    base = ["--base", str(tiny_model_dir), "--greedy", "--max-new-tokens", "12"]
    assert chat.main([*base, "--adapter", "alpha", "The patient has a fever."]) == 0
    greedy = ASSISTANT.decoding.with_changes(do_sample=False, max_new_tokens=12)  # the role's penalty stays
    expected = engine.reply(
        "The patient has a fever.", role=ASSISTANT, adapter=rows["alpha"], decoding=greedy
    )
    assert capsys.readouterr().out == expected + "\n"
    for bad, message in (
        (["--adapter", "nobody"], "No adapter named 'nobody'"),
        (["--temperature", "0"], "temperature must be above 0"),
        (["--role", "nope"], "Unknown role 'nope'"),
    ):
        assert chat.main([*base, *bad, "hi"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
