"""FSDP that shards on the CPU too. accelerate 1.15 turns its FSDP path on only for accelerators
(state.py: MULTI_CPU is not among the types that may become FSDP), so on the CPU a job asking for
FSDP would train a full copy per process; its FSDP2 path itself (`fully_shard` over a device mesh,
full-state-dict checkpoints) runs on gloo unchanged. `on_the_cpu(Trainer)` is a Trainer that
switches it on there; the rest gathers what a sharded model holds when training ends."""

import contextlib
import logging

log = logging.getLogger("translator.train")


def on_the_cpu(trainer_class):
    """`trainer_class` with accelerate's FSDP2 switched on for CPU processes."""

    class ShardedOnTheCpu(trainer_class):
        def create_accelerator_and_postprocess(self):
            super().create_accelerator_and_postprocess()
            if self.is_fsdp_enabled or self.args.fsdp_plugin_args is None:
                return
            from accelerate.state import PartialState
            from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

            if PartialState().distributed_type != DistributedType.MULTI_CPU:
                return
            # both states: each AcceleratorState() copies PartialState's type again
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            state = self.accelerator.state
            state.distributed_type = DistributedType.FSDP
            state.fsdp_plugin = FullyShardedDataParallelPlugin(**self.args.fsdp_plugin_args)
            self.is_fsdp_enabled = True

    ShardedOnTheCpu.__name__ = f"{trainer_class.__name__}ShardedOnTheCpu"
    return ShardedOnTheCpu


def is_sharded(model) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(parameter, DTensor) for parameter in model.parameters())


def held_parameters(model) -> tuple[int, int]:
    """(held by this process, in the whole model): a sharded parameter counts its local shard."""
    from torch.distributed.tensor import DTensor

    held = total = 0
    for parameter in model.parameters():
        total += parameter.numel()
        held += parameter.to_local().numel() if isinstance(parameter, DTensor) else parameter.numel()
    return held, total


def gather_trained(model) -> dict:
    """The trained (LoRA) parameters whole, on every process: a collective, so every rank calls it,
    in the same order. Small: the frozen base stays sharded."""
    from torch.distributed.tensor import DTensor

    gathered = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            whole = parameter.full_tensor() if isinstance(parameter, DTensor) else parameter
            gathered[name] = whole.detach().cpu().clone()
    return gathered


@contextlib.contextmanager
def whole_outside_the_layers(model):
    """A sharded model's own parameters (final norm, head) whole while generating: FSDP gathers
    them in the root's forward, which generation skips (it calls the inner model); each wrapped
    module gathers its own in its forward. Afterwards every module is sharded again: a module that
    keeps its parameters whole after the forward (for the backward) would otherwise stay whole
    when no backward follows. A plain model is left as it is."""
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        for module in model.modules():
            if isinstance(module, FSDPModule):
                module.reshard()
