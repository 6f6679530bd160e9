"""Serving adapters on vLLM: the exact `vllm serve` command, and why vLLM would refuse an adapter,
said before anyone tries.

    python -m exporters.vllm --adapter med-zh-1          # that adapter alone
    python -m exporters.vllm --base builtin:gemma3-270m  # every servable adapter of a base, together

vLLM loads the base once and serves many LoRAs on it (`--enable-lora --lora-modules NAME=PATH`);
requests then name the adapter as their `model`. It refuses what its LoRA kernels do not handle:
a rank outside its supported set, whole modules saved beside the LoRA (modules_to_save), LoRA on
the embeddings or new tokens, and architectures it does not implement (Yuan2: serve the merged model
from `python -m exporters.merge` instead, which our own API server also runs).
"""

import argparse
import functools
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from core import texts
from core.errors import UserError
from engine import catalogue, loading, models
from engine.adapters import CONFIG_FILE
from engine.catalogue import BUILTIN_MODELS
from registry import connect
from registry.adapters import Adapter
from studio import accounts

SUPPORTED_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's --max-lora-rank choices
NOT_SERVED = {loading.YUAN_MODEL_TYPE: "Yuan2"}
EMBEDDING_MODULES = ("embed_tokens", "lm_head", "wte", "embed_in", "embed_out")


@dataclass
class Verdict:
    adapter: str
    rank: int | None
    problems: list[str]

    @property
    def servable(self) -> bool:
        return not self.problems


def verdict(adapter: Adapter) -> Verdict:
    """Every reason vLLM would refuse this adapter (none: it can serve it), from its files' metadata
    alone (nothing is converted or downloaded), worked out once per version of its config: the
    adapters page asks for every sibling of every card."""
    try:
        changed = (Path(adapter.path) / CONFIG_FILE).stat().st_mtime_ns
    except OSError:
        changed = None
    return _check(adapter.name, adapter.path, adapter.base_model, adapter.prompt_format, changed)


@functools.lru_cache(maxsize=512)
def _check(name: str, path: str, base_model: str, prompt_format: str | None, config_changed) -> Verdict:
    adapter = SimpleNamespace(name=name, path=path, base_model=base_model, prompt_format=prompt_format)
    problems = []
    config = _adapter_config(adapter)
    rank = config.get("r")
    if rank not in SUPPORTED_RANKS:
        problems.append(texts.VLLM_RANK.format(rank=rank, ranks=", ".join(map(str, SUPPORTED_RANKS))))
    if config.get("modules_to_save") or config.get("trainable_token_indices"):
        problems.append(texts.VLLM_WHOLE_MODULES)
    targets = config.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else targets
    embedding = [t for t in targets if any(e in t for e in EMBEDDING_MODULES)]
    if embedding:
        problems.append(texts.VLLM_EMBEDDINGS.format(modules=", ".join(embedding)))
    if _added_tokens(adapter):
        problems.append(texts.VLLM_ADDED_TOKENS)
    kind = _model_type(adapter)
    if kind in NOT_SERVED:
        problems.append(texts.VLLM_ARCHITECTURE.format(architecture=NOT_SERVED[kind], name=adapter.name))
    return Verdict(adapter.name, rank if isinstance(rank, int) else None, problems)


def command(adapters: list[dict], *, port: int = 8000) -> str:
    """`vllm serve` for adapters of one base, all of which must pass `check`."""
    if not adapters:
        raise UserError("VLLM_NOTHING")
    bases = {adapter.base_model for adapter in adapters}
    if len(bases) > 1:
        raise UserError("VLLM_ONE_BASE", bases=", ".join(sorted(bases)))
    verdicts = [verdict(adapter) for adapter in adapters]
    refused = [v for v in verdicts if not v.servable]
    if refused:
        raise UserError("\n".join(f"{v.adapter}: {' '.join(v.problems)}" for v in refused))
    base = adapters[0].base_model
    rank = min(r for r in SUPPORTED_RANKS if r >= max(v.rank for v in verdicts))
    modules = [f"{a.name}={Path(a.path).resolve()}" for a in adapters]
    words = [*_environment(base), "vllm", "serve", _served_model(base), "--enable-lora"]
    words += ["--lora-modules", *modules, "--max-lora-rank", str(rank), "--max-loras", str(len(adapters))]
    words += ["--host", "127.0.0.1", "--port", str(port)]
    return " ".join(shlex.quote(word) for word in words)


def _served_model(base: str) -> str:
    """What vLLM loads: the local folder of a built-in or local model, else the hub's repo id."""
    spec = catalogue.parse_model_id(base)
    if spec.source == "local":
        return spec.name
    if spec.source == "builtin":  # where the studio converts it (the Chat page does, once)
        return str(models.present_model_dir(spec) or models.models_dir() / BUILTIN_MODELS[spec.name].folder)
    return spec.name


def _environment(base: str) -> list[str]:
    spec = catalogue.parse_model_id(base)
    return ["VLLM_USE_MODELSCOPE=True"] if spec.source == "modelscope" else []


def _adapter_config(adapter: Adapter) -> dict:
    try:
        return json.loads((Path(adapter.path) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError("ERR_ADAPTER_CONFIG", name=adapter.name, file=CONFIG_FILE, error=error) from None


def _added_tokens(adapter: Adapter) -> bool:
    """Tokens the adapter's tokenizer has beyond the base model's vocabulary."""
    folder = Path(adapter.path)
    if (folder / "added_tokens.json").is_file():
        return True
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        return False
    try:
        base_dir = models.present_model_dir(catalogue.parse_model_id(adapter.base_model))
        if base_dir is None:  # not here yet: vLLM's own check will tell
            return False
        base_config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
        vocabulary = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, UserError):
        return False
    size = base_config.get("vocab_size") or base_config.get("text_config", {}).get("vocab_size") or 0
    ids = [token["id"] for token in vocabulary.get("added_tokens", [])]
    return bool(size) and max(ids, default=0) >= size


def _model_type(adapter: Adapter) -> str | None:
    if adapter.prompt_format == "yuan":
        return loading.YUAN_MODEL_TYPE
    spec = catalogue.parse_model_id(adapter.base_model)
    if spec.source != "local":
        return None
    return loading.model_type(Path(spec.name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exporters.vllm", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--adapter", help="one registered adapter")
    which.add_argument("--base", help="every servable adapter of this base model")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        db = connect()
        if args.adapter:
            chosen = [accounts.cli_adapter(db, args.adapter)]
        else:
            seen = accounts.visible_adapters(db, accounts.cli_asker(db))
            mine = [a for a in seen if a.base_model == args.base]
            for verdict in (verdict(a) for a in mine):
                if not verdict.servable:
                    print(f"# {verdict.adapter}: {' '.join(verdict.problems)}", file=sys.stderr)
            chosen = [a for a in mine if verdict(a).servable]
        print(command(chosen, port=args.port))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
