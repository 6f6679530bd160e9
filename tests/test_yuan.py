"""The Yuan 2.0 port: golden vectors from the reference code, cache, padding, packing, LoRA, tokenizer.

Golden checkpoints live in ../shared/yuan2 (never copied here); those tests skip when it is absent.
The rest run on tiny random Yuan models built from a config at test time.
"""

import shutil

import pytest
import torch

from core.home import PROJECT_ROOT
from engine import catalogue, formats, loading, yuan
from engine.roles import TRANSLATOR
from registry import adapters, connect
from tests.conftest import call_main, golden_dir, run_module

SAMPLE = PROJECT_ROOT / "data" / "translator_sample.jsonl"
EOD, SEP = 3, 4


def _golden(name: str):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    path = golden_dir(name)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, load_file(path / "golden.safetensors")


def _random_yuan(reset: bool = True, seed: int = 0) -> yuan.YuanForCausalLM:
    config = yuan.YuanConfig(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=256,
        initializer_range=0.2,
        reset_attention_mask=reset,
        reset_position_ids=reset,
        eod_token=EOD,
        sep_token=SEP,
        bos_token_id=EOD,
        eos_token_id=EOD,
        pad_token_id=EOD,
    )
    torch.manual_seed(seed)
    return yuan.YuanForCausalLM(config).eval()


def _greedy_without_cache(model, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    ids = prompt
    for _ in range(steps):
        with torch.no_grad():
            logits = model(ids, use_cache=False).logits
        ids = torch.cat((ids, logits[:, -1:].argmax(-1)), dim=1)
    return ids


@pytest.mark.parametrize("name", ["golden_reset", "golden_noreset"])
def test_golden_vectors_are_reproduced(name):
    model, golden = _golden(name)
    assert type(model) is yuan.YuanForCausalLM  # auto_map ignored, no remote code
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

    model.eval()
    with torch.no_grad():
        logits = model(golden["input_ids"]).logits
    assert (logits - golden["logits"]).abs().max().item() < 1e-4

    model.train()
    with torch.no_grad():
        loss = model(golden["input_ids"], labels=golden["labels"]).loss
    assert abs(loss.item() - golden["loss"].item()) < 1e-5

    model.eval()
    new_tokens = golden["greedy_ids"].shape[1] - golden["prompt_ids"].shape[1]
    cached = model.generate(golden["prompt_ids"], max_new_tokens=new_tokens, do_sample=False)
    assert cached.tolist() == golden["greedy_ids"].tolist()
    uncached = _greedy_without_cache(model, golden["prompt_ids"], new_tokens)
    assert uncached.tolist() == golden["greedy_ids"].tolist()


def test_the_eod_mask_matters_in_the_reset_checkpoint():
    """Guards the golden test against passing by accident: the second document must be cut off."""
    model, golden = _golden("golden_reset")
    model.config.reset_position_ids = False  # eval then uses the plain causal mask
    with torch.no_grad():
        plain = model.eval()(golden["input_ids"]).logits
    assert (plain - golden["logits"])[1, 10:].abs().max() > 1e-2  # after the <eod> in row 1
    assert (plain - golden["logits"])[:, :9].abs().max() < 1e-4  # before it nothing changes


def test_no_remote_code_runs_even_when_the_user_opts_in(tmp_path):
    folder = tmp_path / "yuan"
    shutil.copytree(golden_dir("golden_reset"), folder)
    # A checkpoint's own code would be found next to config.json; it must never be imported.
    (folder / "yuan_hf_model.py").write_text("raise SystemExit('remote code ran')\n")
    (folder / "configuration_yuan.py").write_text("raise SystemExit('remote code ran')\n")
    spec = catalogue.parse_model_id(str(folder))
    model = loading.load_model(folder, spec, device="cpu", dtype=torch.float32, trust_remote_code=True)
    assert type(model) is yuan.YuanForCausalLM


def test_incremental_decoding_matches_full_forwards_across_an_eod_in_the_prompt():
    model = _random_yuan(reset=True)
    prompt = torch.tensor([[17, 60, 200, SEP, 90, 91, EOD, 33, 140, 250, SEP]])
    cache = yuan.YuanCache(model.config.num_hidden_layers)
    ids = prompt
    with torch.no_grad():
        step_logits = model(ids, past_key_values=cache, use_cache=True).logits[:, -1]
        for _ in range(8):
            full_logits = model(ids, use_cache=False).logits[:, -1]
            assert torch.allclose(step_logits, full_logits, atol=1e-5)
            token = step_logits.argmax(-1, keepdim=True)
            ids = torch.cat((ids, token), dim=1)
            step_logits = model(token, past_key_values=cache, use_cache=True).logits[:, -1]
    # Explicit mask: Yuan's pad id is its eod id, so generate() would otherwise take the eod for padding.
    generated = model.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False, eos_token_id=None
    )
    assert generated.tolist() == _greedy_without_cache(model, prompt, 8).tolist()


def test_a_left_padded_batch_answers_like_each_row_alone():
    model = _random_yuan(reset=True, seed=1)
    rows = [[11, 12, 13, 14, 15, 16, SEP], [200, 201, SEP]]
    width = max(map(len, rows))
    input_ids = torch.tensor([[EOD] * (width - len(row)) + row for row in rows])
    attention_mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows])
    batched = model.generate(
        input_ids, attention_mask=attention_mask, max_new_tokens=6, do_sample=False, eos_token_id=None
    )
    for index, row in enumerate(rows):
        alone = model.generate(torch.tensor([row]), max_new_tokens=6, do_sample=False, eos_token_id=None)
        assert batched[index, width:].tolist() == alone[0, len(row) :].tolist()
        with torch.no_grad():
            single = model(torch.tensor([row])).logits[0]
            padded = model(input_ids, attention_mask=attention_mask).logits[index, width - len(row) :]
        assert torch.allclose(single, padded, atol=1e-5)


def test_packing_two_examples_into_one_row_changes_the_second_ones_logits():
    model = _random_yuan(reset=True, seed=2)
    first, second = [21, 22, 23, SEP, 24, 25, EOD], [31, 32, SEP, 33, 34, EOD]
    with torch.no_grad():
        alone = model(torch.tensor([second])).logits[0]
        # What DataCollatorWithFlattening would hand the model: one row, positions restarting.
        packed = model(
            torch.tensor([first + second]),
            position_ids=torch.tensor([list(range(len(first))) + list(range(len(second)))]),
        ).logits[0, len(first) :]
    # The eod mask keeps attention inside the example, but the convolution carries the first example's
    # last tokens into the second one's queries and keys (its first token only attends to itself).
    assert torch.allclose(packed[0], alone[0], atol=1e-5)
    assert (packed[1] - alone[1]).abs().max() > 1e-3
    from training.data.batching import choose_packing

    assert not choose_packing("auto", model.config.model_type, trust_remote_code=False)


def test_lora_on_all_projections_trains_with_gradient_checkpointing():
    from peft import LoraConfig, get_peft_model

    batch = torch.tensor([[11, 12, 13, SEP, 14, 15, EOD], [21, 22, SEP, 23, 24, 25, EOD]])
    labels = batch.masked_fill(torch.tensor([[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0]]).bool(), -100)
    losses = []
    for checkpointing in (False, True):
        model = _random_yuan(reset=True, seed=3)
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        lora = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0, target_modules=targets))
        if checkpointing:
            lora.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            lora.enable_input_require_grads()
        lora.train()
        loss = lora(batch, labels=labels).loss
        loss.backward()
        losses.append(loss.item())
        trained = {n: p.grad for n, p in lora.named_parameters() if p.requires_grad}
        assert len(trained) == 2 * 7 * model.config.num_hidden_layers
        assert all(name.count("lora_") for name in trained)
        # lora_B starts at zero, so on the first step every adapted projection shows up in lora_B's grad.
        assert all(grad.abs().sum() > 0 for name, grad in trained.items() if "lora_B" in name)
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)


def test_the_tokenizer_is_set_up_as_the_tutorials_do(yuan_model_dir):
    tokenizer = loading.load_tokenizer(yuan_model_dir, catalogue.parse_model_id(str(yuan_model_dir)))
    assert tokenizer.eos_token == "<eod>" and tokenizer.eos_token_id == EOD
    assert tokenizer.convert_tokens_to_ids("<sep>") == SEP
    assert len(tokenizer) <= 320  # the markup tokens already exist: no id beyond the embeddings
    assert type(tokenizer).__name__ == "LlamaTokenizer"
    ids = tokenizer("fever")["input_ids"]
    assert ids[0] != tokenizer.bos_token_id and ids[-1] != EOD  # no automatic bos (the file asks for one)
    assert tokenizer.decode(tokenizer("患者发烧")["input_ids"]) == "患者发烧"  # byte fallback round trip
    spec = catalogue.parse_model_id(str(yuan_model_dir))
    assert loading.default_prompt_format(spec, yuan_model_dir, tokenizer) == "yuan"
    example = formats.training_example(tokenizer, "yuan", TRANSLATOR, {"input": "a <sep> b", "output": "c"})
    prompt, target = example.input_ids[: example.prompt_length], example.input_ids[example.prompt_length :]
    assert prompt[-1] == SEP and target[-1] == EOD and prompt.count(SEP) == 2  # markup stays one token
    assert example.labels[: example.prompt_length] == [formats.IGNORE_INDEX] * example.prompt_length
    assert formats.stop_token_ids(tokenizer, "yuan") == [EOD]


def test_the_catalogue_offers_yuan2_with_the_yuan_format(yuan_model_dir):
    """The tutorial's model id, once downloaded, trains and chats with the yuan format."""
    spec = catalogue.parse_model_id("IEITYuan/Yuan2-2B-Mars-hf")  # as the tutorial writes it
    assert spec.model_id in catalogue.CATALOGUE and spec.source == "modelscope"
    tokenizer = loading.load_tokenizer(yuan_model_dir, spec)
    assert loading.default_prompt_format(spec, yuan_model_dir, tokenizer) == "yuan"
    assert loading.check_model_folder(yuan_model_dir, trust_remote_code=True) == loading.YUAN_MODEL_TYPE
    assert yuan.MODEL_TYPE == loading.YUAN_MODEL_TYPE


@pytest.mark.slow
def test_lora_training_run_registers_an_adapter_that_chats(home, yuan_model_dir):
    result = run_module(
        "training.train",
        "--base",
        yuan_model_dir,
        "--data",
        SAMPLE,
        "--role",
        "translator",
        "--name",
        "yuan-t",
        "--max-steps",
        "3",
        "--batch-size",
        "2",
        "--grad-accum",
        "1",
        "--lr",
        "1e-3",
        "--skip-evaluation",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    adapter = adapters.get(connect(), "yuan-t")
    assert adapters.folder_is_present(adapter) and adapter.prompt_format == "yuan"
    assert adapter.metrics["steps"] == 3
    folder = home / "adapters" / "yuan-t"
    config = (folder / "adapter_config.json").read_text()
    for target in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert f'"{target}"' in config
    assert "remote code" not in result.stderr.lower()
    log = (home / "jobs" / str(adapter.job_id) / "train.log").read_text()
    assert "batches padded, length-grouped" in log  # never packed: the convolution would cross examples

    chat = call_main("studio.chat", "--adapter", "yuan-t", "--greedy", "--max-new-tokens", "8", "A fever.")
    assert chat.returncode == 0, chat.stderr[-3000:]
    from engine.generation import ChatEngine

    engine = ChatEngine(str(yuan_model_dir), device="cpu")
    decoding = TRANSLATOR.decoding.with_changes(do_sample=False, max_new_tokens=8, num_beams=1)
    with_adapter = engine.reply("A fever.", role=TRANSLATOR, adapter=adapter, decoding=decoding)
    assert chat.stdout == with_adapter + "\n"  # the CLI answers with the trained adapter, nothing else
    assert with_adapter != engine.reply("A fever.", role=TRANSLATOR, decoding=decoding)


def test_batched_greedy_with_rows_leaving_early_equals_one_by_one(yuan_model_dir):
    """Rows leave the batch at their own limits: the Yuan cache drops them, LF state included."""
    from engine.generation import ChatEngine

    chat = ChatEngine(str(yuan_model_dir), device="cpu")
    texts = ["A fever.", "The patient has a cough and a fever.", "Pain."]
    limits = [3, 9, 6]
    greedy = TRANSLATOR.decoding.with_changes(num_beams=1)
    batched = chat.generate_batch(texts, role=TRANSLATOR, decoding=greedy, max_new_tokens=limits)
    for text, limit, reply in zip(texts, limits, batched, strict=True):
        alone = chat.generate_batch([text], role=TRANSLATOR, decoding=greedy, max_new_tokens=[limit])[0]
        assert reply == alone
    # each row's own limit counts: the first row was cut at 3 tokens, not at the batch's 9
    longer = chat.generate_batch(texts[:1], role=TRANSLATOR, decoding=greedy, max_new_tokens=[9])[0]
    assert longer != batched[0]


def test_an_adapter_with_whole_modules_is_refused_on_a_yuan_base(db, home, yuan_model_dir):
    from tests.conftest import assert_whole_module_adapters_are_refused

    assert_whole_module_adapters_are_refused(db, yuan_model_dir, home / "whole", f"local:{yuan_model_dir}")


def test_beam_search_on_the_yuan_cache_answers_each_row_as_alone(yuan_model_dir):
    """Beam search reorders the cache each step: the Yuan cache's filtering state goes with it."""
    from engine.generation import ChatEngine

    chat = ChatEngine(str(yuan_model_dir), device="cpu")
    texts = ["A fever.", "The patient has a cough and a fever.", "Pain."]
    beams = TRANSLATOR.decoding.with_changes(max_new_tokens=6)
    assert beams.num_beams == 2
    batched = chat.generate_batch(texts, role=TRANSLATOR, decoding=beams)
    assert batched == [chat.generate_batch([text], role=TRANSLATOR, decoding=beams)[0] for text in texts]
    assert all(batched)
