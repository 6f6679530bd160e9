"""The output layer's rows padded to 16 on a CPU (engine/head_rows.py): same logits, same shapes."""

import copy

import torch
from transformers import AutoModelForCausalLM

from engine import head_rows


def test_padded_output_rows_give_the_plain_logits_for_every_row_count(tiny_model_dir):
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    padded = copy.deepcopy(plain)
    assert head_rows.pad_output_rows(padded)
    for rows in (1, 4, 5, 8, 15, 16, 20):
        ids = torch.randint(10, 500, (rows, 6))
        with torch.inference_mode():
            expected = plain(input_ids=ids, logits_to_keep=1).logits
            got = padded(input_ids=ids, logits_to_keep=1).logits
            whole = padded(input_ids=ids[:1]).logits  # every position of one row: 6 rows of the layer
        assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5), rows
        assert whole.shape == (1, 6, expected.shape[-1])
        if not head_rows.FEWEST <= rows < head_rows.FAST:
            assert torch.equal(got, expected), f"{rows} rows were padded"


def test_only_a_float32_linear_output_layer_on_a_cpu_is_padded(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    assert not head_rows.pad_output_rows(model)
    assert not model.get_output_embeddings()._forward_pre_hooks
