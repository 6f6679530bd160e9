"""A scratch registry for benchmarks that register adapters, sharing the usual model cache."""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def scratch_home() -> Iterator[Path]:
    """TRANSLATOR_HOME in a temporary folder; the built-in model is not converted a second time."""
    from engine.models import models_dir

    os.environ.setdefault("TRANSLATOR_MODELS_DIR", str(models_dir()))
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["TRANSLATOR_HOME"] = scratch
        yield Path(scratch)


def make_adapters(engine, db, scratch: Path, count: int) -> list[str]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.adapters import write_metadata
    from studio import adapters as studio_adapters
    from training.config import LORA_TARGETS
    from training.trainer.fit import lora_targets

    model = AutoModelForCausalLM.from_pretrained(engine.model_dir)
    config = LoraConfig(
        r=8, lora_alpha=32, target_modules=lora_targets(model, LORA_TARGETS), init_lora_weights=False
    )
    model = get_peft_model(model, config)
    names = []
    for index in range(count):
        torch.manual_seed(index)
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                torch.nn.init.normal_(parameter, std=0.02)
        name = f"bench-{index}"
        folder = scratch / "adapters" / name
        model.save_pretrained(folder, safe_serialization=True)
        write_metadata(folder, name=name, base_model=engine.base_model_id, role="translator")
        studio_adapters.register(
            db,
            name=name,
            role="translator",
            base_model=engine.base_model_id,
            prompt_format=engine.prompt_format,
            path=folder,
            hyperparameters={"lora_r": 8},
        )
        names.append(name)
    return names
