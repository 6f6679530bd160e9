"""Merging an adapter into its base: the same model, standalone (exporters/merge.py)."""

import json
import shutil

import pytest
import torch

from core.errors import UserError
from engine import yuan  # noqa: F401  (registers our Yuan model type, as the app does)
from engine.generation import ChatEngine
from engine.roles import TRANSLATOR
from exporters import merge
from registry import adapters
from tests.conftest import make_adapter, register_adapter

PROMPTS = [f"The patient number {i} has a fever and a cough." for i in range(10)] + [
    "Wash your hands.",
    "Take two tablets a day.",
    "The child slept well.",
    "Blood pressure was normal.",
    "She was given oxygen.",
    "No side effects were seen.",
    "The trial ended early.",
    "Pain improved after surgery.",
    "He has diabetes.",
    "Call a doctor.",
]


@pytest.fixture(params=["builtin", "llama", "gemma", "yuan"])
def family(request, builtin_dir, tiny_model_dir, gemma_like_dir):
    """(base model id, model folder, prompt format) of each family we train."""
    if request.param == "builtin":
        return "builtin", builtin_dir, "chat_template"
    if request.param == "yuan":
        folder = request.getfixturevalue("yuan_model_dir")
        return f"local:{folder}", folder, "yuan"
    folder = {"llama": tiny_model_dir, "gemma": gemma_like_dir}[request.param]
    return f"local:{folder}", folder, "plain" if request.param == "gemma" else "chat_template"


@pytest.mark.slow
def test_the_merged_model_equals_base_plus_adapter(home, db, family, tmp_path):
    base_id, model_dir, prompt_format = family
    folder = _trained_sized_adapter(model_dir, home / "adapters" / "m")
    adapter = register_adapter(db, "m", folder, base_id, role="translator", prompt_format=prompt_format)
    out = merge.merge(db, "m", tmp_path / "merged")

    config = json.loads((out / "config.json").read_text())
    assert "auto_map" not in config or not config["auto_map"], "a merged model needs no remote code"
    assert not list(out.glob("*.bin")) and (out / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".tmp-*"))

    engine = ChatEngine(base_id, device="cpu")
    merged = ChatEngine(f"local:{out}", device="cpu")
    merged.prompt_format = prompt_format
    assert merged.model.config.model_type == engine.model.config.model_type
    for text in PROMPTS[:3]:
        ids = engine.prompt_ids(TRANSLATOR, text, adapter=adapter)
        assert ids == merged.prompt_ids(TRANSLATOR, text), "the tokenizer travels with the model"
        with_adapter = _all_logits(engine, ids, adapter)
        folded = _all_logits(merged, ids, None)
        base_only = _all_logits(engine, ids, None)
        bound = summation_order_bound(engine.model.config, with_adapter.abs().max().item())
        assert (with_adapter - folded).abs().max().item() <= bound
        effect = (with_adapter - base_only).abs().max().item()
        assert effect > 100 * bound, f"a wrong merge (adapter effect {effect:.3g}) would pass {bound:.3g}"

    greedy = TRANSLATOR.decoding.with_changes(do_sample=False, max_new_tokens=8, num_beams=1)
    mine = engine.generate_batch(PROMPTS, role=TRANSLATOR, adapter=adapter, decoding=greedy)
    theirs = merged.generate_batch(PROMPTS, role=TRANSLATOR, decoding=greedy)
    assert mine == theirs


FLOAT32_UNIT_ROUNDOFF = 2.0**-24


def summation_order_bound(config, logit_scale: float) -> float:
    """How far two float32 computations of the same logits may differ when only the order of the
    sums differs (base + LoRA on the fly against LoRA folded into the weights; another thread count).
    Each dot product of length d rounds to about sqrt(d)·u relative (u = 2^-24, errors that add like
    a random walk), and each of the L layers (plus the head) adds its own through the residual stream:
    (L + 1)·sqrt(d)·u of the logits' scale, times 8 for what normalisation and gating amplify.
    Measured here: SmolLM2 (L 30, d 576) 1.0e-4 to 1.4e-4 at scale 43 with 1 or 2 threads, against
    this bound's 1.5e-2 and an adapter effect of 4.1; the 2-layer test models stay within a fifth
    of theirs. A wrong merge (a missing module, a wrong scale) moves logits by the adapter's effect."""
    layers, width = config.num_hidden_layers, config.hidden_size
    return 8 * (layers + 1) * width**0.5 * FLOAT32_UNIT_ROUNDOFF * logit_scale


def _trained_sized_adapter(model_dir, folder):
    """Random LoRA weights of the size training gives (B small, not zero): every projection of
    every layer changed, as a real adapter is. (make_adapter's B is huge on purpose, to change greedy
    outputs of a random model; on a 30-layer model that would compare rounding, not merging.)"""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=32, target_modules=targets, init_lora_weights=False)
    )
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.01)
    peft_model.save_pretrained(folder, safe_serialization=True)
    return folder


def _all_logits(engine, ids, adapter):
    if adapter is not None:
        engine.ensure_adapter(adapter)
    with engine._answering_as(adapter):
        return engine.model(input_ids=torch.tensor([ids])).logits[0].float()


def test_the_folder_carries_prompt_decoding_and_a_model_card(home, db, tiny_model_dir, tmp_path):
    from registry import evaluations

    folder = make_adapter(tiny_model_dir, home / "adapters" / "card", seed=4)
    adapter = register_adapter(db, "card", folder, f"local:{tiny_model_dir}", role="persona")
    evaluations.store(
        db,
        adapter_id=adapter.id,
        adapter_name="card",
        base_model=adapter.base_model,
        role="persona",
        kind="loss",
        dataset_name="dev.jsonl",
        dataset_fingerprint="abc123",
        num_examples=7,
        scores={"loss": 1.25, "perplexity": 3.49, "tokens": 90},
        signature="mean cross-entropy over 90 reference tokens",
        predictions_path="",
    )
    out = merge.merge(db, "card", tmp_path / "card-merged")
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["do_sample"] is True and generation["temperature"] == 0.5
    assert generation["top_p"] == 0.9 and generation["repetition_penalty"] == 1.1
    prompt = json.loads((out / merge.PROMPT_FILE).read_text(encoding="utf-8"))
    assert prompt["system_prompt"] == "现在你要扮演皇帝身边的女人--甄嬛" and prompt["role"] == "persona"
    assert "现在你要扮演皇帝身边的女人--甄嬛" in prompt["prompt_for_one_message"]
    card = (out / "README.md").read_text(encoding="utf-8")
    for expected in (
        f"base_model: local:{tiny_model_dir}",
        "lora_r 4",
        "dev.jsonl [abc123], 7 examples: loss 1.25, perplexity 3.49",
        "mean cross-entropy over 90 reference tokens",
        "Decoding preset",
    ):
        assert expected in card, expected


def test_a_merged_yuan_model_loads_as_our_type_without_remote_code(home, db, yuan_model_dir, tmp_path):
    from engine import catalogue, loading

    folder = make_adapter(yuan_model_dir, home / "adapters" / "y", seed=5)
    register_adapter(db, "y", folder, f"local:{yuan_model_dir}", role="translator", prompt_format="yuan")
    out = merge.merge(db, "y", tmp_path / "y-merged")
    assert loading.check_model_folder(out, trust_remote_code=False) == "yuan"
    model = loading.load_model(out, catalogue.parse_model_id(str(out)), device="cpu", dtype=torch.float32)
    assert type(model).__module__ == "engine.yuan"


def test_bad_requests_get_one_clear_message_and_leave_nothing(home, db, tiny_model_dir, tmp_path, capsys):
    folder = make_adapter(tiny_model_dir, home / "adapters" / "ok", seed=6)
    register_adapter(db, "ok", folder, f"local:{tiny_model_dir}")
    with pytest.raises(UserError, match="no adapter called 'nope'|nope"):
        merge.merge(db, "nope", tmp_path / "x")
    (tmp_path / "taken").mkdir()
    with pytest.raises(UserError, match="already exists"):
        merge.merge(db, "ok", tmp_path / "taken")
    with pytest.raises(UserError, match="dtype"):
        merge.merge(db, "ok", tmp_path / "y", dtype="int3")

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not _writable(locked):  # root ignores permissions: nothing to simulate there
            with pytest.raises(UserError, match="Could not write"):
                merge.merge(db, "ok", locked / "out")
            assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)

    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    with pytest.raises(UserError, match="Could not write"):  # what a full or read-only disk looks like
        merge.merge(db, "ok", a_file / "out")

    moved = tmp_path / "moved-base"
    shutil.copytree(tiny_model_dir, moved)
    folder = make_adapter(moved, home / "adapters" / "orphan", seed=7)
    register_adapter(db, "orphan", folder, f"local:{moved}")
    shutil.rmtree(moved)
    with pytest.raises(UserError):
        merge.merge(db, "orphan", tmp_path / "orphan-out")
    assert not (tmp_path / "orphan-out").exists() and not list(tmp_path.glob(".tmp-*"))

    capsys.readouterr()
    assert merge.main(["--adapter", "nope", "--out", str(tmp_path / "z")]) == 2
    assert capsys.readouterr().err == "error: No adapter named 'nope' in the registry (known: orphan, ok).\n"
    assert adapters.get(db, "ok") is not None


def _writable(folder) -> bool:
    try:
        (folder / ".probe").write_text("")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True
