"""Shared fixtures: a fresh TRANSLATOR_HOME per test, the built-in model converted once per cache,
and tiny random models built from configs at test time."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
# Converting the built-in GGUF takes ~30 s: keep the result across test runs in pytest's cache dir.
MODELS_CACHE = PROJECT_ROOT / ".pytest_cache" / "translator-models"

os.environ["TRANSLATOR_MODELS_DIR"] = str(MODELS_CACHE)
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests read messages in English (the product's default is Chinese); tests/test_texts.py and the
# language tests render both languages on purpose.
os.environ["TRANSLATOR_LANG"] = "en"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("TRANSLATOR_HOME", str(path))
    return path


@pytest.fixture
def db(home):
    from registry import connect

    return connect()


@pytest.fixture(scope="session")
def builtin_dir() -> Path:
    from engine import catalogue, models

    return models.resolve_model_dir(catalogue.parse_model_id("builtin"), progress=lambda *_: None)


@pytest.fixture(scope="session")
def tiny_model_dir(builtin_dir, tmp_path_factory) -> Path:
    """A 2-layer random Llama with the built-in model's tokenizer plus Yuan's <sep> and <eod>."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(builtin_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<sep>", "<eod>"]})
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def paramed_train() -> Path:
    path = SHARED_DATA / "paramed" / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"shared data absent: {path} (the ParaMed sample lives in ../shared/data)")
    return path


def run_module(module: str, *args: str, timeout: float = 600, **popen) -> subprocess.CompletedProcess:
    """Run `python -m module` as a real subprocess with the test's TRANSLATOR_HOME."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


TINY_TRAINING = ("--batch-size", "1", "--grad-accum", "1", "--lr", "1e-3")
SAMPLE = PROJECT_ROOT / "data" / "translator_sample.jsonl"


def start_trainer(tiny_model_dir: Path, name: str, *extra) -> subprocess.Popen:
    """`python -m training.train` on the tiny model and the bundled sample, as a shell would run it."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "training.train", "--base", str(tiny_model_dir), "--data", str(SAMPLE),
            "--name", name, *TINY_TRAINING, *map(str, extra),
        ],
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def wait_until(condition, *, what: str, timeout: float = 120, every: float = 0.05):
    """condition()'s first true value, polled every `every` seconds; the test fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_for_status(db, job_id: int, condition, *, what: str, timeout: float = 120) -> dict:
    """The job, read through the lifecycle (a dead trainer reads as ended), once condition(job) holds."""
    from training import lifecycle

    return wait_until(lambda: condition(job := lifecycle.get(db, job_id)) and job, what=what, timeout=timeout)


def wait_for_step(process: subprocess.Popen, name: str, step: int, timeout: float = 120):
    """The job of `name` once its trainer reported `step`."""
    from registry import connect, jobs

    db = connect()

    def reached():
        job = jobs.active_for_name(db, name)
        assert process.poll() is None, process.stderr.read()[-3000:]
        return job if job and (job.step or 0) >= step else None

    return wait_until(reached, what=f"the trainer to reach step {step}", timeout=timeout, every=0.02)


def make_adapter(
    model_dir: Path,
    folder: Path,
    seed: int,
    targets=("q_proj", "v_proj"),
    modules_to_save=None,
    r: int = 4,
    b_std: float = 0.5,
) -> Path:
    """A LoRA adapter with random (non-zero) weights, saved as PEFT safetensors; `b_std` sets how far
    it moves the model (0.5: far enough to change greedy outputs of a tiny random model)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(
        r=r,
        lora_alpha=4 * r,
        target_modules=list(targets),
        init_lora_weights=False,
        modules_to_save=modules_to_save,
    )
    peft_model = get_peft_model(model, config)
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:  # make each adapter's effect large enough to change greedy outputs
            torch.nn.init.normal_(parameter, std=b_std)
    peft_model.save_pretrained(folder, safe_serialization=True)
    return folder


def lora_folder(folder: Path, **config) -> Path:
    """A minimal adapter folder as PEFT writes one (config + safetensors), without a model."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "adapter_config.json", {"peft_type": "LORA", "r": 4, **config})
    save_file({"base_model.model.lora_A.weight": torch.ones(4, 8)}, folder / "adapter_model.safetensors")
    return folder


def register_adapter(db, name: str, folder: Path, base_model: str, role="assistant", prompt_format=None):
    from studio import adapters as studio_adapters

    return studio_adapters.register(
        db,
        name=name,
        role=role,
        base_model=base_model,
        prompt_format=prompt_format or "chat_template",
        path=folder,
        hyperparameters={"lora_r": 4},
    )


def adapter_row(**fields):
    """An adapter row as the registry returns one, for code that only reads it."""
    from registry.adapters import Adapter

    defaults = {"id": 0, "role": "assistant", "base_model": "builtin", "prompt_format": "chat_template"}
    return _row(
        Adapter, {"path": "", "hyperparameters": {}, "metrics": {}, "created_at": 0.0, **defaults, **fields}
    )


def job_row(**fields):
    """A job row as the registry returns one, for code that only reads it."""
    from registry.jobs import Job

    return _row(Job, {"config": {}, "status": "queued", "created_at": 0.0, **fields})


def _row(row_type, values: dict):
    import dataclasses

    columns = {field.name for field in dataclasses.fields(row_type)}
    assert set(values) <= columns, set(values) - columns
    return row_type(**{name: values.get(name) for name in columns})


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


def assert_whole_module_adapters_are_refused(db, model_dir: Path, folder: Path, base_model: str) -> None:
    """A real PEFT adapter that also saves whole modules: its weights would reach every request
    whatever adapter it chose, so registration refuses it."""
    import pytest

    from core.errors import UserError

    make_adapter(model_dir, folder, seed=3, modules_to_save=["lm_head"])
    with pytest.raises(UserError, match="replaces whole modules \\(modules_to_save: lm_head\\)"):
        register_adapter(db, "whole", folder, base_model)
    assert db["adapters"].count == 0


@pytest.fixture(scope="session")
def gemma_dir() -> Path:
    """The built-in Chinese model, converted once per models cache (~1.5 min on 2 cores the first time)."""
    import importlib.util

    from engine import catalogue, models

    if importlib.util.find_spec(catalogue.BUILTIN_MODELS[catalogue.CHINESE_BUILTIN].package) is None:
        pytest.skip("the Gemma-3-270m packages are not installed (./setup.sh installs them)")
    return models.resolve_model_dir(
        catalogue.parse_model_id(catalogue.CHINESE_BUILTIN), progress=lambda *_: None
    )


def use_running_server_navigation(monkeypatch) -> None:
    """AppTest rebuilds Streamlit's page manager on every run, so each run would be a server's first
    run, in legacy multipage mode because of our pages/ folder (the e2e tests cover that first run).
    With this, every run sees what a running server sees after it."""
    from streamlit.runtime.pages_manager import PagesManager

    original_init = PagesManager.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


class ApiServer:
    """A real uvicorn server on a free port, in a thread of this process."""

    def __init__(self, engine, api_key=None):
        import uvicorn

        from serving import api

        self.port = free_port()
        self.app = api.create_app(engine, api_key=api_key)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    @property
    def scheduler(self):
        return self.app.state.service.scheduler

    def client(self, key="unused"):
        import openai

        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=120)

    def __enter__(self):
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
