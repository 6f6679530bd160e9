"""Shared fixtures: a fresh TRANSLATOR_HOME per test, the built-in model converted once per cache,
and tiny random models built from configs at test time."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# Under pytest-xdist each worker gets its share of the cores, and so does every process it starts
# (the variables are read when torch loads; llama.cpp takes THREADS where a test starts it): two
# workers each running torch or llama.cpp on every core would make their threads spin at each
# other's barriers (the first two-worker run finished 12 tests in 21 minutes; llama.cpp's LoRA test
# took 317 s instead of 28).
THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_variable] = str(THREADS)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(THREADS)

from engine.conversion import CONVERSION_VERSION  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

# Converting the built-ins takes ~2 min and depends only on the conversion, not on the clone: the
# result is kept outside it (beside llama.cpp's wheel), one folder per conversion version, so a
# clean clone on the same machine reuses it and a clone with another conversion never mixes in.
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "translator"
MODELS_CACHE = CACHE_ROOT / "test-models" / f"conversion-{CONVERSION_VERSION}"

os.environ["TRANSLATOR_MODELS_DIR"] = str(MODELS_CACHE)
# Every process a test starts inherits this mark: what a failing test leaves running is found by
# it and its start time (see ends_what_a_failing_test_started), whoever its parent is by then.
RUN_MARK = "TRANSLATOR_TEST_RUN"
os.environ[RUN_MARK] = str(os.getpid())
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests read messages in English (the product's default is Chinese); tests/test_texts.py and the
# language tests render both languages on purpose.
os.environ["TRANSLATOR_LANG"] = "en"
# AppTest runs the app in this process, where the Reconciler (one per server process) would outlive
# the test that started it and tick in the homes of the tests after; its own tests start one, and
# the browser tests' real server keeps the product's default (tests/e2e/conftest.py).
os.environ["TRANSLATOR_RECONCILE_SECONDS"] = "0"


# The README's command runs two pytest-xdist workers (`-n 2`): most slow tests spend their time in
# one-core work (a process importing torch, a conversion, a page waiting on a server), so two of
# them at once fill both cores. A module's tests stay on one worker (its module fixtures, a
# Streamlit server, are built once), and so do the modules that read the same costly session
# fixture; the groups holding the most slow tests are handed out first. (xdist's own
# `--dist loadgroup` does not group under pytest 9: it renames nodeids, which pytest 9 no longer
# reads; so the grouping is a scheduler of our own, through xdist's hook for one.)
SHARED_FIXTURE_GROUPS = {
    # smollm2_chat_export: SmolLM2's merged and LoRA GGUF files and our engine's tokens for them
    "tests/test_llama_cpp.py": "smollm2-gguf",
    "tests/e2e/test_llama_cpp_server.py": "smollm2-gguf",
    # trained_job: the tiny model trained once, with checkpoints, events and its evaluation
    "tests/test_trainer.py": "trained-job",
    "tests/test_checkpoints.py": "trained-job",
    "tests/test_evaluate.py": "trained-job",
    "tests/test_tracking.py": "trained-job",
    # slurm_cluster: a one-machine Slurm (munged, slurmctld, slurmd)
    "tests/test_slurm.py": "slurm-cluster",
    "tests/e2e/test_slurm_page.py": "slurm-cluster",
}


def sharing_group(nodeid: str) -> str:
    """The worker-sharing group of a test: its module, or the group of modules it shares a fixture with."""
    where = nodeid.split("::")[0]
    return SHARED_FIXTURE_GROUPS.get(where, where)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class BySharedFixtures(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return sharing_group(nodeid)

    config.option.loadscopereorder = False  # in the order collected (below), not by test count
    return BySharedFixtures(config, log)


def pytest_collection_modifyitems(config, items):
    if not hasattr(config, "workerinput"):
        return  # one process (or xdist's controller, which collects nothing): nothing to order
    weight = {}
    for item in items:
        slow = item.get_closest_marker("slow") or item.get_closest_marker("e2e")
        weight[sharing_group(item.nodeid)] = weight.get(sharing_group(item.nodeid), 0) + (10 if slow else 1)
    position = {id(item): index for index, item in enumerate(items)}
    items.sort(
        key=lambda item: (-weight[sharing_group(item.nodeid)], sharing_group(item.nodeid), position[id(item)])
    )


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture(autouse=True)
def ends_what_a_failing_test_started(request):
    """A failing test's trainers, servers and tasks would slow every later test: once it has failed
    (setup, body or teardown), every process of this run started since it began is killed, found
    by the run's mark in its environment and its start time, never by its name."""
    began = _clock_ticks()
    yield
    if request.node.stash.get(FAILED, False):
        for pid in _processes_of_this_run(since=began):
            _kill(pid)


def _clock_ticks() -> int:
    """Now, in the unit of /proc/<pid>/stat's start time (clock ticks since boot)."""
    return int(float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK"))


def _processes_of_this_run(since: int) -> list[tuple[int, int]]:
    """(pid, start time) of each live process carrying this run's mark, started at `since` or later."""
    from studio.supervisor import process_alive, process_start

    mark = f"{RUN_MARK}={os.getpid()}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid, started = int(entry.name), process_start(int(entry.name))
        try:
            if started is not None and started >= since and process_alive(pid, started):
                if mark in (entry / "environ").read_bytes().split(b"\0"):
                    found.append((pid, started))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _kill(process: tuple[int, int], signum=signal.SIGKILL, why="left running by the failed test") -> None:
    from studio.supervisor import process_alive

    pid, started = process
    if process_alive(pid, started):  # still the same process: pids are reused
        try:
            os.kill(pid, signum)
            print(f"\nended pid {pid}, {why}")
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session", autouse=True)
def ends_what_the_run_leaves_running():
    """At the end of the run, its processes still alive are asked to end (SIGTERM): the warm-start
    resident (studio/warm.py), which would otherwise wait out its idle time, and any stray worker."""
    began = _clock_ticks()
    yield
    for process in _processes_of_this_run(since=began):
        _kill(process, signal.SIGTERM, "still running at the end of the run")


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
def gemma_like_dir(tiny_model_dir, tmp_path_factory):
    """A 2-layer random Gemma-3 text model with the tiny Llama's tokenizer; its sliding window of 16
    is short, so a reply soon outgrows it."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("tiny-gemma")
    Gemma3ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def letters_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama over 36 tokens (lower-case letters, space, newline, some punctuation):
    small enough that a few dozen GRPO steps visibly move what it samples. Its embeddings start
    larger than the tiny model's (std 0.15, not 0.02), or its logits could barely leave uniform."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {token: index for index, token in enumerate([*specials, *"abcdefghijklmnopqrstuvwxyz .,?!\n"])}
    letters = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    letters.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    letters.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=letters, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=0.15,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("letters-llama")
    LlamaForCausalLM(config).save_pretrained(path)
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


def call_main(module: str, *args) -> subprocess.CompletedProcess:
    """`python -m module ARGS` called in this process through its `main(argv)`, its output captured:
    for a CLI whose parsing, messages and exit code are under test, where a process would only add
    its start-up (imports: seconds each). Returns what run_module returns."""
    import contextlib
    import importlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = importlib.import_module(module).main([str(arg) for arg in args])
        except SystemExit as exit:  # argparse's refusals, as the interpreter reports them
            code = exit.code if isinstance(exit.code, int) or exit.code is None else 1
            if isinstance(exit.code, str):
                print(exit.code, file=sys.stderr)
    return subprocess.CompletedProcess([module, *map(str, args)], code or 0, out.getvalue(), err.getvalue())


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


def handles_sigterm(pid: int) -> bool:
    """Process `pid` has its own SIGTERM handler and does not hold SIGTERM back (/proc's masks)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        fields = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
    except OSError:
        return False
    bit = 1 << (signal.SIGTERM - 1)
    return bool(int(fields["SigCgt"], 16) & bit) and not int(fields["SigBlk"], 16) & bit


def wait_for_status(db, job_id: int, condition, *, what: str, timeout: float = 120) -> dict:
    """The job, read through the lifecycle (a dead trainer reads as ended), once condition(job) holds."""
    from training.jobs import lifecycle

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

    def __init__(self, engine, api_key=None, team=False):
        import uvicorn

        from serving import api

        self.port = free_port()
        self.app = api.create_app(engine, api_key=api_key, team=team)
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


@pytest.fixture(scope="session")
def gguf_studio(tmp_path_factory):
    """One home for the session's GGUF exports (minutes each), with llama.cpp's converters."""
    from exporters import llama_cpp as converters

    try:
        converters.converters()
    except Exception as error:
        pytest.skip(f"llama.cpp converters absent ({error}); ./setup.sh installs them")
    from registry import connect

    home = tmp_path_factory.mktemp("gguf-home")
    return connect(home / "registry.db"), home


@pytest.fixture(scope="session")
def smollm2_chat_export(gguf_studio):
    """SmolLM2 with a rank-4 LoRA on q and v in its chat template, as llama.cpp's tests and its
    server's browser test use it: the merged GGUFs, the base GGUF and the GGUF LoRA are made on
    first use and kept for the session, and so are our engine's greedy tokens for its prompts."""
    from tests.gguf_exports import Exported

    db, home = gguf_studio
    return Exported(db, home, "smollm2-chat")


class TrainedJob:
    """A finished trainer run in a home of its own (see the `trained_job` fixture)."""

    def __init__(self, home: Path, name: str, mlflow_store: Path):
        self.home, self.name, self.mlflow_store = home, name, mlflow_store

    def at_home(self, monkeypatch) -> None:
        """Make the job's home this test's TRANSLATOR_HOME."""
        monkeypatch.setenv("TRANSLATOR_HOME", str(self.home))


@pytest.fixture(scope="session")
def trained_job(tiny_model_dir, tmp_path_factory) -> TrainedJob:
    """The tiny model trained once for the session as a user runs the trainer (a real process):
    6 steps of the bundled translator sample with 10 of its 40 examples held out, a checkpoint
    every 2 steps (each scored, the best published), TensorBoard events and a local MLflow store.
    Tests of the trainer, checkpoints, tracking and evaluation read it; the ones that add to it
    (publishing another checkpoint) add adapters of other names."""
    home = tmp_path_factory.mktemp("trained-home")
    job = TrainedJob(home, "tiny-t", home / "mlruns")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSLATOR_HOME", str(home))
        result = run_module(
            "training.train", "--base", tiny_model_dir, "--data", SAMPLE, "--name", job.name,
            "--max-steps", "6", "--save-steps", "2", "--holdout", "0.25", "--mlflow-uri", job.mlflow_store,
            *TINY_TRAINING,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return job


@pytest.fixture(scope="session")
def single_process_run(tmp_path_factory):
    """The single-process reference that the DDP, FSDP and two-node parity tests compare against:
    `python -m training.train ARGS --name one` in a home of its own, trained on the first ask for
    those ARGS and shared after; returns that home's registry."""
    from registry import connect

    made = {}

    def run(*args):
        args = tuple(map(str, args))
        if args not in made:
            home = tmp_path_factory.mktemp("single-process")
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("TRANSLATOR_HOME", str(home))
                result = run_module("training.train", *args, "--name", "one")
            assert result.returncode == 0, result.stderr[-3000:]
            made[args] = home / "registry.db"
        return connect(made[args])

    return run


YUAN_GOLDEN = PROJECT_ROOT.parent / "shared" / "yuan2"


def golden_dir(name: str) -> Path:
    """One of the shared Yuan 2.0 golden checkpoints (../shared/yuan2), or a skip saying it is absent."""
    path = YUAN_GOLDEN / name
    if not (path / "golden.safetensors").is_file():
        pytest.skip(f"shared Yuan golden vectors absent: {path} (they live in ../shared/yuan2)")
    return path


@pytest.fixture(scope="session")
def yuan_model_dir(tmp_path_factory) -> Path:
    """The golden checkpoint plus a tokenizer, as a ModelScope download of Yuan2 would look. The
    tokenizer is what Yuan2 ships: a sentencepiece `tokenizer.model` read as LlamaTokenizer, bos
    added by default (trained on the sample's English to the golden vocabulary size, 320, with byte
    fallback; `<eod>` and the markup tokens take ids 3, 4, ... as in the golden config), built as the
    GPU suite builds its Yuan model's."""
    import shutil

    from bench.gpu_suite import yuan_tokenizer

    folder = tmp_path_factory.mktemp("yuan") / "Yuan2-golden"
    shutil.copytree(golden_dir("golden_reset"), folder, ignore=shutil.ignore_patterns("golden.safetensors"))
    yuan_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A one-machine Slurm cluster (tests/slurm_cluster.py) for the session; SLURM_CONF points this
    process's Slurm commands, and the trainers they start, at it."""
    from tests import slurm_cluster as cluster_module

    reason = cluster_module.missing()
    if reason:
        pytest.skip(reason)
    cluster = cluster_module.Cluster(tmp_path_factory.mktemp("slurm")).start()
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    yield cluster
    cluster.stop()
    if before is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = before
