"""GGUF export through llama.cpp's own converters, read back (exporters/gguf.py)."""

import numpy as np
import pytest
import torch

from core.errors import UserError
from exporters import gguf as gguf_export
from exporters import llama_cpp, merge
from tests.conftest import make_adapter, register_adapter

PROMPT_IDS = [1, 42, 77, 300, 5, 901, 13, 2]


@pytest.fixture(scope="module", autouse=True)
def converters_present():
    try:
        llama_cpp.converters()
    except UserError as error:
        pytest.skip(f"llama.cpp converters absent ({error}); ./setup.sh installs them")


@pytest.fixture
def adapter(home, db, tiny_model_dir):
    folder = make_adapter(
        tiny_model_dir, home / "adapters" / "g", seed=11, targets=("q_proj", "v_proj", "down_proj")
    )
    return register_adapter(db, "g", folder, f"local:{tiny_model_dir}", role="translator")


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([PROMPT_IDS])).logits[0].float()


@pytest.mark.slow
def test_the_merged_gguf_reads_back_with_the_merged_models_logits(db, adapter, tmp_path):
    from transformers import AutoModelForCausalLM

    merged_dir = merge.merge(db, "g", tmp_path / "merged")
    reference = _logits(AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32))
    for outtype, tolerance in (("f32", 1e-4), ("f16", 2e-2)):
        path = gguf_export.export_merged(db, "g", tmp_path / f"g-{outtype}.gguf", outtype=outtype)
        assert path.is_file() and not list(tmp_path.glob(".tmp-*"))
        assert f"FROM ./g-{outtype}.gguf\n" in gguf_export.modelfile_path(path).read_text(encoding="utf-8")
        back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
        difference = (_logits(back) - reference).abs().max().item()
        # f16 keeps 11 significant bits: each weight moves by up to 2^-11 of itself, and these
        # logits (a few units) move by about 1e-3; 2e-2 leaves room, a wrong mapping is off by units.
        assert difference < tolerance, (outtype, difference)


@pytest.mark.slow
def test_every_tensor_of_the_gguf_lora_matches_the_peft_weights(db, adapter, tmp_path):
    from gguf import GGUFReader
    from safetensors.torch import load_file

    path = gguf_export.export_lora(db, "g", tmp_path / "g-lora.gguf")
    reader = GGUFReader(path)
    alpha = reader.fields["adapter.lora.alpha"]
    assert float(alpha.parts[alpha.data[0]][0]) == 16.0
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    peft = load_file(f"{adapter.path}/adapter_model.safetensors")
    names = {"q_proj": "attn_q", "v_proj": "attn_v", "down_proj": "ffn_down"}
    assert len(tensors) == len(peft) == 2 * 3 * 2  # A and B, three modules, two layers
    for key, weight in peft.items():
        layer = int(key.split(".layers.")[1].split(".")[0])
        module = next(m for m in names if f".{m}." in key)
        part = "lora_a" if "lora_A" in key else "lora_b"
        stored = tensors[f"blk.{layer}.{names[module]}.weight.{part}"]
        expected = weight.float().numpy()
        if module == "q_proj" and part == "lora_b":
            # llama.cpp stores q (and k) output rows permuted for its rope layout (LlamaModel.permute)
            expected = _permute(expected, heads=4)
        assert stored.shape == expected.shape, key
        assert np.allclose(stored, expected, atol=1e-6), key


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    rows = weights.shape[0]
    return (
        weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def test_bad_requests_are_refused_before_any_work(db, adapter, home, tmp_path):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    (tmp_path / "taken.gguf").write_text("")
    with pytest.raises(UserError, match="already exists"):
        gguf_export.export_merged(db, "g", tmp_path / "taken.gguf")
    with pytest.raises(UserError, match="q4_9"):
        gguf_export.export_merged(db, "g", tmp_path / "x.gguf", outtype="q4_9")
    with pytest.raises(UserError, match="nope"):
        gguf_export.export_lora(db, "nope", tmp_path / "y.gguf")
    from registry import adapters

    with db.conn:
        db["adapters"].update(adapter.id, {"prompt_format": "yuan"})
    with pytest.raises(UserError, match="llama.cpp does not know the Yuan2 architecture"):
        gguf_export.export_merged(db, "g", tmp_path / "z.gguf")
    assert adapters.get(db, "g") is not None and sorted(p.name for p in tmp_path.iterdir()) == ["taken.gguf"]
