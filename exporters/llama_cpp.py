"""llama.cpp's own GGUF converters and its Python bindings, pinned, from one source archive.

    python -m exporters.llama_cpp --install      # setup.sh runs this: the converters
    python -m exporters.llama_cpp --bindings     # setup.sh --dev (or --llama-cpp): build llama.cpp

The llama-cpp-python 0.3.36 source distribution on PyPI vendors llama.cpp with
`convert_hf_to_gguf.py`, `convert_lora_to_gguf.py`, their `conversion/` package and `gguf-py`
(version 0.19.0, the `gguf` our requirements pin). Only those files are extracted, into
`$TRANSLATOR_TOOLS_DIR` (default: inside the virtual environment), through a temporary folder
renamed into place. We run the converters as they are, in a subprocess; we never rewrite them.

The bindings (`llama_cpp`, with llama.cpp's C++ library built for this CPU: tests, examples,
tools and llava off) are what the tests run our GGUF files with, as llama.cpp and Ollama users
will. The archive is kept in `$TRANSLATOR_WHEELS_DIR` (default `~/.cache/translator/wheels`), and
the wheel built from it too, under this CPU's name: a second setup installs it without building.
"""

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from core.errors import UserError

PACKAGE, VERSION = "llama-cpp-python", "0.3.36"
VENDORED = "vendor/llama.cpp/"
WANTED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")


# what the build leaves out: only the library and the bindings are needed
BUILD_OPTIONS = (
    "-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF "
    "-DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=ON"
)
# On x86, no AMX: -march=native turns on ggml's AMX matrix kernels on Xeons since Sapphire Rapids,
# and they crash (ggml_backend_amx_mul_mat) decoding a merged q8_0 export on this project's own
# machines; an explicit -mno-amx-int8 wins over -march=native in GCC and Clang, so the AVX-512
# kernels run instead. Other architectures do not know the flag.
X86_BUILD_OPTIONS = "-DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8"


def build_options() -> str:
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    return f"{BUILD_OPTIONS} {X86_BUILD_OPTIONS}" if x86 else BUILD_OPTIONS


DISKCACHE = "diskcache==5.6.3"


def wheels_dir() -> Path:
    root = os.environ.get("TRANSLATOR_WHEELS_DIR") or str(Path.home() / ".cache" / "translator" / "wheels")
    return Path(root)


def tools_dir() -> Path:
    root = os.environ.get("TRANSLATOR_TOOLS_DIR") or str(Path(sys.prefix) / "share" / "translator-tools")
    return Path(root) / f"llama.cpp-from-{PACKAGE}-{VERSION}"


def converters() -> Path:
    """The folder holding the converters, or a message saying how to get them."""
    folder = tools_dir()
    if not (folder / "convert_hf_to_gguf.py").is_file():
        raise UserError("ERR_NO_CONVERTERS", folder=folder, version=VERSION)
    return folder


def source_archive() -> Path:
    """The pinned source archive, downloaded once into the wheels folder."""
    folder = wheels_dir()
    kept = folder / f"{PACKAGE.replace('-', '_')}-{VERSION}.tar.gz"
    if kept.is_file():
        return kept
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}", "--no-deps"]
            + ["--no-binary", ":all:", "--quiet", "--disable-pip-version-check", "-d", scratch],
            check=True,
        )
        next(Path(scratch).glob("*.tar.gz")).rename(kept)
    return kept


def install(sdist: Path | None = None) -> Path:
    folder = tools_dir()
    if (folder / "convert_hf_to_gguf.py").is_file():
        return folder
    sdist = sdist or source_archive()
    staging = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            inside = member.name.split(VENDORED, 1)[1] if VENDORED in member.name else ""
            if member.isfile() and inside.startswith(WANTED):
                member.name = inside
                archive.extract(member, staging, filter="data")
    staging.rename(folder)
    return folder


def cpu_name() -> str:
    """What a native build depends on: the machine, its CPU's instruction set flags and the build's
    options (a wheel built with other options is not reused)."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    built_for = f"{flags}\n{build_options()}"
    return f"{platform.machine()}-{hashlib.sha256(built_for.encode()).hexdigest()[:12]}"


def bindings_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def build_bindings(sdist: Path | None = None) -> Path:
    """The bindings' wheel for this CPU: built once from the pinned archive (minutes), then kept."""
    folder = wheels_dir() / cpu_name()
    built = sorted(folder.glob(f"{PACKAGE.replace('-', '_')}-{VERSION}-*.whl"))
    if built:
        return built[-1]
    sdist = sdist or source_archive()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        environment = {**os.environ, "CMAKE_ARGS": build_options()}
        environment.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check"]
            + ["-w", scratch, str(sdist)],
            env=environment,
            check=True,
        )
        wheel = next(Path(scratch).glob("*.whl"))
        return wheel.rename(folder / wheel.name)  # whole or absent: renamed once built


def installed_wheel() -> str | None:
    """The file the installed bindings came from, as pip recorded it (None: not installed, or not
    from a file)."""
    import importlib.metadata
    import json

    try:
        record = importlib.metadata.distribution(PACKAGE).read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    return json.loads(record).get("url") if record else None


def install_bindings(sdist: Path | None = None) -> Path:
    """The wheel for this CPU and these build options installed, replacing bindings that came from
    another (an older build, or one with other options)."""
    wheel = build_bindings(sdist)
    if installed_wheel() != wheel.resolve().as_uri():
        # its own needs are ours (numpy, jinja2, typing-extensions) and diskcache: --no-deps keeps
        # pip from re-checking, and complaining about, the built-in models' packages
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
            + ["--force-reinstall", str(wheel), DISKCACHE],
            check=True,
        )
    return wheel


# Loads a GGUF (and a LoRA on it) the way llama.cpp's tools do, in its own process: a file that
# crashes llama.cpp must not take the studio with it. Its log goes to stderr for the message.
_LOAD_PROBE = """
import sys
import llama_cpp
model, lora = sys.argv[1], sys.argv[2] or None
llama_cpp.Llama(model_path=model, lora_path=lora, n_ctx=64, n_threads=1, verbose=True)
"""


def check_loads(model: Path, lora: Path | None = None) -> None:
    """Raise a UserError naming what to change when llama.cpp cannot load `model` (with `lora`).
    Without the bindings there is nothing to check with, and the export stands as written."""
    if not bindings_installed():
        return
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_PROBE, str(model), str(lora or "")],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=600,
    )
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    # llama-cpp-python loads on without a LoRA that does not fit the base: llama.cpp only logs it
    unapplied = [line for line in lines if "failed to apply lora" in line.lower()]
    if done.returncode == 0 and not unapplied:
        return
    if unapplied:
        lines = unapplied
    reasons = [line for line in lines if "error" in line.lower() or "failed" in line.lower()]
    reason = " / ".join((reasons or lines or [f"exit {done.returncode}"])[-3:])[:600]
    broken = lora or model
    raise UserError("ERR_GGUF_WONT_LOAD", file=broken.name, reason=reason)


def run_converter(script: str, *args: str) -> None:
    """Run one of llama.cpp's converters with its own gguf-py; its last lines become the message
    when it fails."""
    folder = converters()
    environment = {**os.environ, "PYTHONPATH": str(folder / "gguf-py"), "NO_LOCAL_GGUF": ""}
    done = subprocess.run(
        [sys.executable, str(folder / script), *args],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise UserError("ERR_CONVERTER_FAILED", script=script, tail=tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exporters.llama_cpp", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--install", action="store_true", help=f"fetch {PACKAGE} {VERSION}'s converters")
    parser.add_argument("--bindings", action="store_true", help="build once, install llama.cpp bindings")
    parser.add_argument("--sdist", type=Path, help="use this source archive instead of downloading it")
    args = parser.parse_args(argv)
    if args.bindings:
        started = time.monotonic()
        wheel = install_bindings(args.sdist)
        print(f"llama.cpp bindings from {wheel} ({time.monotonic() - started:.0f} s)")
    if args.install:
        print(f"llama.cpp converters in {install(args.sdist)}")
        return 0
    try:
        print(converters())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
