"""Which adapter answers, per thread and per row, over one resident base model.

PEFT's `generate(adapter_names=...)` installs temporary hooks on the shared LoRA layers for the
duration of a call; two concurrent calls stack their hooks and the last one wins, so each user could
get the other's adapter. Here every LoRA layer carries one permanent hook (`hook_lora_layers`) that
reads the adapter chosen by the calling thread (`thread_choice`), so concurrent generations with
different adapters stay independent, and no request ever switches the adapter for everybody
(`set_adapter`). A batch whose rows use different adapters goes through PEFT's mixed-batch LoRA,
with the rows of each adapter found once per forward pass. `SharedExclusiveLock` lets many
generations run at once while loading an adapter (which edits the model) waits for them all.
"""

import functools
import threading
import types

import torch.nn.functional as F

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch

thread_choice = threading.local()  # .adapter: this thread's choice (a name, or one per row)


def _select_adapter_for_thread(module, args, kwargs):
    adapter = getattr(thread_choice, "adapter", None)
    if adapter is None:
        return None
    if isinstance(adapter, list):  # one adapter per row of a mixed batch (the API server's)
        kwargs["adapter_names"] = adapter
        return args, kwargs
    batch = args[0] if args else kwargs["x"]
    size = batch.shape[0]
    names = getattr(thread_choice, "names", None)
    if names is None or len(names) != size or names[0] != adapter:  # one list object per pass
        names = thread_choice.names = [adapter] * size
    kwargs["adapter_names"] = names
    return args, kwargs


def _mixed_batch_forward(self, x, *args, adapter_names, **kwargs):
    """PEFT's mixed-batch LoRA (each row with its own adapter), with the rows of each adapter found
    once per forward pass instead of once per layer, and the LoRA product computed without module
    calls: the same arithmetic, less Python per token. Anything but plain LoRA in eval mode (DoRA
    and other variants, dropout while training, a LoRA bias) takes PEFT's own path."""
    plain = not self.training and not self.lora_variant
    if not plain or any(self.lora_B[name].bias is not None for name in self.lora_B):
        return type(self)._mixed_batch_forward(self, x, *args, adapter_names=adapter_names, **kwargs)
    for key in _variant_keys():  # for LoRA variants only; the base layer does not take them
        kwargs.pop(key, None)
    result = self.base_layer(x, *args, **kwargs)
    for name, rows in _row_groups(adapter_names, x.device):
        if name == BASE or name not in self.lora_A:
            continue
        lora_a, lora_b = self.lora_A[name].weight, self.lora_B[name].weight
        part = x if rows is None else x.index_select(0, rows)
        delta = F.linear(F.linear(part.to(lora_a.dtype), lora_a), lora_b) * self.scaling[name]
        if rows is None:
            result += delta.to(result.dtype)
        else:
            result.index_add_(0, rows, delta.to(result.dtype))
    return result


@functools.cache
def _variant_keys() -> tuple[str, ...]:
    from peft.tuners.lora.layer import VARIANT_KWARG_KEYS

    return tuple(VARIANT_KWARG_KEYS)


def _row_groups(adapter_names: list, device) -> list:
    """(adapter, its rows as an index tensor; None: every row) for one forward pass: every layer
    gets the same list object, so the grouping is computed once per pass and thread."""
    cached = getattr(thread_choice, "groups", None)
    if cached is not None and cached[0] is adapter_names:
        return cached[1]
    import torch

    order = list(dict.fromkeys(adapter_names))
    if len(order) == 1:
        groups = [(order[0], None)]
    else:
        groups = [
            (name, torch.tensor([i for i, n in enumerate(adapter_names) if n == name], device=device))
            for name in order
        ]
    thread_choice.groups = (adapter_names, groups)
    return groups


class SharedExclusiveLock:
    """Many generations at once; loading an adapter (which edits the model) waits for them all."""

    def __init__(self):
        self._condition = threading.Condition()
        self._readers = 0
        self._writer = False

    def shared(self):
        return _Held(self._acquire_shared, self._release_shared)

    def exclusive(self):
        return _Held(self._acquire_exclusive, self._release_exclusive)

    def _acquire_shared(self):
        with self._condition:
            self._condition.wait_for(lambda: not self._writer)
            self._readers += 1

    def _release_shared(self):
        with self._condition:
            self._readers -= 1
            self._condition.notify_all()

    def _acquire_exclusive(self):
        with self._condition:
            self._condition.wait_for(lambda: not self._writer)
            self._writer = True
            self._condition.wait_for(lambda: self._readers == 0)

    def _release_exclusive(self):
        with self._condition:
            self._writer = False
            self._condition.notify_all()


class _Held:
    def __init__(self, acquire, release):
        self._acquire, self._release = acquire, release

    def __enter__(self):
        self._acquire()

    def __exit__(self, *exc):
        self._release()


def hook_lora_layers(model) -> None:
    """Give every LoRA layer of `model` not hooked yet the per-thread choice of adapter."""
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer) and not getattr(module, "_translator_hooked", False):
            module.register_forward_pre_hook(_select_adapter_for_thread, with_kwargs=True)
            if isinstance(module, LoraLinear):
                module._mixed_batch_forward = types.MethodType(_mixed_batch_forward, module)
            module._translator_hooked = True
