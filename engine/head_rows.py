"""The output layer's product for a few rows on a CPU, computed as 16 rows.

PyTorch's CPU matrix product (MKL's single-precision GEMM) multiplies fewer than 16 rows a few at a
time, reading the whole weight again for each few: for Gemma-3's 262,144 × 640 output layer on this
machine's 2 cores, 12 rows take 129 ms and 16 rows 60 ms, 15 rows 160 ms (`bench/head_rows.py`
prints the table; from 5 rows on, 16 are no slower). The API server's running batch and the
engine's batches often hold 5 to 15 rows (a reply each, or a beam each), so the output layer pads
them with zero rows up to 16 and drops those rows' logits.
The kept rows are the same sums in another order: equal to the unpadded product to float32's last
bits, as the products of 1 and 2 rows already differ from each other.
"""

import threading

FEWEST = 5  # below this the few-rows product is the faster one
FAST = 16

_pending = threading.local()  # the row count the pre-hook padded, for the hook that cuts it back


def pad_output_rows(model) -> bool:
    """Pad the rows of `model`'s output layer as above when it is a plain float32 linear layer on a
    CPU; whether it now does."""
    import torch

    head = model.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.weight.device.type != "cpu":
        return False
    if head.weight.dtype != torch.float32:
        return False
    head.register_forward_pre_hook(_pad)
    head.register_forward_hook(_cut)
    return True


def _pad(module, args):
    import torch

    (hidden,) = args
    rows = hidden.numel() // hidden.shape[-1]
    _pending.shape = None
    if not FEWEST <= rows < FAST:
        return None
    _pending.shape = hidden.shape
    flat = hidden.reshape(rows, hidden.shape[-1])
    return (torch.nn.functional.pad(flat, (0, 0, 0, FAST - rows)),)


def _cut(module, args, output):
    shape, _pending.shape = getattr(_pending, "shape", None), None
    if shape is None:
        return None
    return output[: shape[:-1].numel()].reshape(*shape[:-1], output.shape[-1])
