"""Adapters of the built-in models exported as GGUF, with our engine's greedy tokens for the
llama.cpp prompts: made once per test session by the fixtures in tests/conftest.py and compared
with llama.cpp by tests/test_llama_cpp.py and tests/e2e/test_llama_cpp_server.py."""

import json
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, make_adapter, register_adapter

NEW_TOKENS = 32
SEVEN = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# LoRA B weights drawn with this spread change every answer of these models yet keep activations
# in range; at 0.5 Gemma's logits reach 40 and llama.cpp and torch part ways by 1.5 logits
B_STD = 0.05
# (model, prompt format, LoRA rank, targets, prompts per role, spread of B): each built-in in the
# formats the studio uses it with, from the narrowest LoRA the studio trains (rank 4 on q and v) to
# the widest (rank 64 on all seven projections; B's spread shrinks with the square root of the rank,
# so it moves the model about as far as a rank-16 one). SmolLM2 agrees with llama.cpp exactly at
# f32, so 8 prompts a role show it as well as 20 did (every one of 40 agreed); Gemma's 262k-token
# head makes each token slow and its near-ties (5 of 40 measured) are what it adds, seen on 4 a role.
SHAPES = {
    "smollm2-chat": ("builtin", "chat_template", 4, ("q_proj", "v_proj"), 8, B_STD),
    "smollm2-plain-r64": ("builtin", "plain", 64, SEVEN, 8, B_STD / 2),
    "gemma-plain": ("builtin:gemma3-270m", "plain", 8, SEVEN, 4, B_STD),
}


def prompt_texts(per_role: int) -> dict:
    """The first `per_role` inputs of the bundled translator and persona samples, by role."""
    from engine.roles import PERSONA, TRANSLATOR

    translator = [
        json.loads(line)["input"]
        for line in (PROJECT_ROOT / "data" / "translator_sample.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    persona = [
        record["instruction"]
        for record in json.loads((PROJECT_ROOT / "data" / "persona_sample.json").read_text(encoding="utf-8"))
    ]
    return {TRANSLATOR: translator[:per_role], PERSONA: persona[:per_role]}


def greedy(new_tokens: int = NEW_TOKENS):
    from engine.roles import Decoding

    return Decoding(do_sample=False, max_new_tokens=new_tokens, num_beams=1)


class Exported:
    """One adapter registered in `db`, its engine, and its GGUF files (each made on first use)."""

    def __init__(self, db, home: Path, name: str):
        from engine import catalogue, models
        from engine.generation import ChatEngine

        self.db, self.home = db, home
        model_id, self.prompt_format, rank, targets, self.per_role, b_std = SHAPES[name]
        self.name = name
        self.base_dir = models.resolve_model_dir(catalogue.parse_model_id(model_id), progress=lambda *_: None)
        self.folder = make_adapter(
            self.base_dir, home / "made" / name, seed=7, targets=targets, r=rank, b_std=b_std
        )
        self.adapter = register_adapter(
            self.db, name, self.folder, model_id, role="translator", prompt_format=self.prompt_format
        )
        self.engine = ChatEngine(model_id, device="cpu")
        self.out = home / "exports"
        self.files: dict[str, Path] = {}
        self._reference: list | None = None

    @contextmanager
    def at_home(self):
        """TRANSLATOR_HOME set to this export's home while its files are made."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("TRANSLATOR_HOME", str(self.home))
            yield

    def merged(self, outtype: str) -> Path:
        from exporters import gguf as gguf_export

        if outtype not in self.files:
            path = self.out / f"{self.name}-{outtype}.gguf"
            with self.at_home():
                self.files[outtype] = gguf_export.export_merged(self.db, self.name, path, outtype=outtype)
        return self.files[outtype]

    def lora(self) -> tuple[Path, Path]:
        """The base model as an f32 GGUF (one per base model in this home, shared by its adapters),
        and the adapter as a GGUF LoRA on it."""
        from exporters import gguf as gguf_export

        if "lora" not in self.files:
            self.files["base"] = base = base_gguf(self.base_dir, self.out)
            with self.at_home():
                self.files["lora"] = gguf_export.export_lora(
                    self.db, self.name, self.out / f"{self.name}-lora.gguf", base_gguf=str(base)
                )
        return self.files["base"], self.files["lora"]

    def stops(self) -> set[int]:
        from engine import formats

        return set(formats.stop_token_ids(self.engine.tokenizer, self.prompt_format, self.engine.model))

    def prompts(self):
        for role, texts in prompt_texts(self.per_role).items():
            for text in texts:
                yield role, text, self.engine.prompt_ids(role, text, adapter=self.adapter)

    def engine_tokens(self, ids: list[int]) -> list[int]:
        """Greedy, as the chat page computes a reply (its token loop), 32 tokens or to a stop."""
        return list(self.engine.token_ids(ids, adapter=self.adapter, decoding=greedy(), stops=self.stops()))

    @property
    def reference(self) -> list[tuple]:
        """Our engine's greedy tokens for every prompt: (role, text, prompt ids, tokens)."""
        if self._reference is None:
            self._reference = [
                (role, text, ids, self.engine_tokens(ids)) for role, text, ids in self.prompts()
            ]
        return self._reference


def base_gguf(base_dir: Path, out: Path) -> Path:
    """`base_dir` converted to an f32 GGUF in `out` once: renamed into place when whole."""
    from exporters import llama_cpp as converters

    path = out / f"{base_dir.name}-base-f32.gguf"
    if not path.is_file():
        staging = path.with_name(f".tmp-{path.name}")
        out.mkdir(parents=True, exist_ok=True)
        converters.run_converter(
            "convert_hf_to_gguf.py", str(base_dir), "--outtype", "f32", "--outfile", str(staging)
        )
        staging.rename(path)
    return path
