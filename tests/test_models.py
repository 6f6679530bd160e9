import json

import pytest

from core.errors import UserError
from engine import catalogue, conversion, loading, models


@pytest.mark.parametrize(
    ("text", "model_id", "source"),
    [
        ("builtin", "builtin", "builtin"),
        ("IEITYuan/Yuan2-2B-Mars-hf", "modelscope:IEITYuan/Yuan2-2B-Mars-hf", "modelscope"),
        (
            "modelscope:LLM-Research/Llama-3.2-3B-Instruct",
            "modelscope:LLM-Research/Llama-3.2-3B-Instruct",
            "modelscope",
        ),
        ("hf:HuggingFaceTB/SmolLM2-135M-Instruct", "hf:HuggingFaceTB/SmolLM2-135M-Instruct", "hf"),
    ],
)
def test_model_ids_name_their_source(text, model_id, source):
    spec = catalogue.parse_model_id(text)
    assert (spec.model_id, spec.source) == (model_id, source)


def test_a_local_folder_is_a_model_id(tiny_model_dir):
    spec = catalogue.parse_model_id(str(tiny_model_dir))
    assert spec == catalogue.ModelSpec(f"local:{tiny_model_dir}", "local", str(tiny_model_dir))
    assert catalogue.parse_model_id(spec.model_id) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "No base model given"),
        ("builtin:nope", "Unknown built-in model"),
        ("hf:../../etc", "is not a model id"),
        ("modelscope:just-a-name", "is not a model id"),
        ("./no/such/folder", "does not exist"),
        ("not a model", "is not a model id"),
    ],
)
def test_bad_model_ids_are_explained(text, message):
    with pytest.raises(UserError, match=message):
        catalogue.parse_model_id(text)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        catalogue.parse_model_id(str(tmp_path))


@pytest.mark.parametrize(
    ("text", "source"),
    [("no-such-org-x1/no-such-model", "ModelScope"), ("hf:no-such-org-x1/no-such-model", "Hugging Face Hub")],
)
def test_unavailable_hub_models_fail_with_id_and_source(home, text, source):
    spec = catalogue.parse_model_id(text)
    with pytest.raises(UserError) as raised:
        models.resolve_model_dir(spec, progress=lambda *_: None)
    assert "no-such-org-x1/no-such-model" in str(raised.value) and source in str(raised.value)


def test_builtin_model_is_converted_once_and_loads_from_the_cache(builtin_dir):
    assert (builtin_dir / "model.safetensors").is_file() and (builtin_dir / "tokenizer.json").is_file()
    spec = catalogue.parse_model_id("builtin")
    assert models.resolve_model_dir(spec, progress=lambda *_: pytest.fail("converted twice")) == builtin_dir
    tokenizer = loading.load_tokenizer(builtin_dir, spec)
    assert loading.default_prompt_format(spec, builtin_dir, tokenizer) == "chat_template"
    assert not list(builtin_dir.parent.glob(".tmp-*")), "no half-written conversion left behind"


def test_model_code_only_runs_after_opting_in(tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "my_custom_arch", "auto_map": {"AutoConfig": "modeling.MyConfig"}})
    )
    (folder / "modeling.py").write_text("raise SystemExit('remote code ran')\n")
    spec = catalogue.parse_model_id(str(folder))
    with pytest.raises(UserError, match="--trust-remote-code"):
        loading.load_model(folder, spec, device="cpu", dtype=None)


def test_dtype_follows_the_device():
    import torch

    assert loading.choose_dtype("cpu") == torch.float32
    assert loading.parse_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(UserError, match="Unknown dtype"):
        loading.parse_dtype("int3", "cpu")


def test_tiny_folder_without_template_defaults_to_plain(tmp_path, tiny_model_dir):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    spec = catalogue.parse_model_id(str(folder))
    tokenizer = loading.load_tokenizer(folder, spec)
    tokenizer.chat_template = None
    assert loading.default_prompt_format(spec, folder, tokenizer) == "plain"


@pytest.mark.slow
def test_a_builtin_model_converted_by_an_older_version_is_converted_again_in_place_with_progress(
    builtin_dir, tmp_path, monkeypatch
):
    """Caches made before the tokenizer carried the GGUF's control tokens have no version file.
    The conversion reports its progress as a first conversion does (what the chat page shows on a
    fresh machine while it waits, about a minute on 2 cores): the same code converts either way, so
    one conversion shows both (a fresh home's first conversion runs in tests/e2e/test_from_nothing.py)."""
    import shutil

    monkeypatch.setenv("TRANSLATOR_MODELS_DIR", str(tmp_path / "models"))
    old = tmp_path / "models" / builtin_dir.name
    shutil.copytree(builtin_dir, old)
    (old / conversion.CONVERSION_FILE).unlink()
    (old / "left-by-the-old-version.txt").write_text("old")
    assert conversion.conversion_version(old) == 0
    reported = []
    folder = models.resolve_model_dir(
        catalogue.parse_model_id("builtin"),
        progress=lambda fraction, stage: reported.append((fraction, stage)),
    )
    fractions = [fraction for fraction, _ in reported]
    assert fractions == sorted(fractions) and fractions[0] < 0.5 and fractions[-1] == 1.0
    assert len(reported) >= 4 and all(
        stage.startswith("Converting the built-in model") for _, stage in reported
    )
    assert folder == old and conversion.conversion_version(folder) == conversion.CONVERSION_VERSION
    assert not (folder / "left-by-the-old-version.txt").exists() and (folder / "model.safetensors").is_file()
    assert not list(folder.parent.glob(".tmp-*")), "the old folder and the staging folder are gone"
    assert models.resolve_model_dir(
        catalogue.parse_model_id("builtin"), progress=lambda *_: pytest.fail("twice")
    )


def test_users_runs_watch_no_files_and_show_no_automatic_page_list():
    """A watcher would follow the workspace, where jobs write checkpoints, and the virtualenv."""
    import tomllib

    from core.home import PROJECT_ROOT

    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["fileWatcherType"] == "none" and config["server"]["address"] == "127.0.0.1"
    assert config["client"]["showSidebarNavigation"] is False


def test_the_chinese_builtin_is_converted_once_tokenizer_included_and_uses_the_plain_format(gemma_dir):
    """Gemma's own behaviour: a base model without a chat template whose GGUF tokenizer conversion is
    the slow part; the cached folder holds tokenizer.json, so later starts skip it."""
    spec = catalogue.parse_model_id(catalogue.CHINESE_BUILTIN)
    assert spec.model_id == "builtin:gemma3-270m" and spec.source == "builtin"
    assert (gemma_dir / "model.safetensors").is_file() and (gemma_dir / "tokenizer.json").is_file()
    assert models.resolve_model_dir(spec, progress=lambda *_: pytest.fail("converted twice")) == gemma_dir
    assert not list(gemma_dir.parent.glob(".tmp-*")), "no scratch GGUF or half-written folder left behind"
    tokenizer = loading.load_tokenizer(gemma_dir, spec)
    assert not getattr(tokenizer, "chat_template", None)
    assert loading.default_prompt_format(spec, gemma_dir, tokenizer) == "plain"
    assert loading.model_type(gemma_dir) == "gemma3_text"
    license_file = conversion.builtin_license(catalogue.CHINESE_BUILTIN)
    assert license_file is not None and "Gemma" in license_file.read_text(encoding="utf-8", errors="replace")
    assert conversion.builtin_license("builtin") is None


def test_gemma_prompts_start_with_bos_and_targets_end_with_eos(gemma_dir):
    from engine import formats
    from engine.roles import TRANSLATOR

    tokenizer = loading.load_tokenizer(gemma_dir, catalogue.parse_model_id(catalogue.CHINESE_BUILTIN))
    record = {"instruction": "", "input": "The patient has a fever.", "output": "患者发烧了。"}
    example = formats.training_example(tokenizer, "plain", TRANSLATOR, record)
    tokens = tokenizer.convert_ids_to_tokens(example.input_ids)
    assert tokens[0] == "<bos>" and tokens[-1] == "<eos>" and tokens.count("<bos>") == 1
    prompt = formats.prompt_ids(tokenizer, "plain", TRANSLATOR, "The patient has a fever.")
    assert example.input_ids[: example.prompt_length] == prompt, "chat sends exactly what was trained"
    assert tokenizer.decode(example.input_ids[example.prompt_length : -1]) == "患者发烧了。"
    # Gemma's turn markers are single tokens of its vocabulary (not used by the plain format).
    assert len(tokenizer("<start_of_turn>", add_special_tokens=False)["input_ids"]) == 1
