"""llama.cpp's own GGUF converters, pinned, obtained once from the package registry.

    python -m serving.llama_cpp --install      # setup.sh runs this

The llama-cpp-python 0.3.36 source distribution on PyPI vendors llama.cpp with
`convert_hf_to_gguf.py`, `convert_lora_to_gguf.py`, their `conversion/` package and `gguf-py`
(version 0.19.0, the `gguf` our requirements pin). Only those files are extracted, into
`$TRANSLATOR_TOOLS_DIR` (default: inside the virtual environment), through a temporary folder
renamed into place. We run the converters as they are, in a subprocess; we never rewrite them.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from core import texts
from core.errors import UserError

PACKAGE, VERSION = "llama-cpp-python", "0.3.36"
VENDORED = "vendor/llama.cpp/"
WANTED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")


def tools_dir() -> Path:
    root = os.environ.get("TRANSLATOR_TOOLS_DIR") or str(Path(sys.prefix) / "share" / "translator-tools")
    return Path(root) / f"llama.cpp-from-{PACKAGE}-{VERSION}"


def converters() -> Path:
    """The folder holding the converters, or a message saying how to get them."""
    folder = tools_dir()
    if not (folder / "convert_hf_to_gguf.py").is_file():
        raise UserError(texts.ERR_NO_CONVERTERS.format(folder=folder, version=VERSION))
    return folder


def install(sdist: Path | None = None) -> Path:
    folder = tools_dir()
    if (folder / "convert_hf_to_gguf.py").is_file():
        return folder
    with tempfile.TemporaryDirectory() as scratch:
        if sdist is None:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}", "--no-deps"]
                + ["--no-binary", ":all:", "--quiet", "--disable-pip-version-check", "-d", scratch],
                check=True,
            )
            sdist = next(Path(scratch).glob("*.tar.gz"))
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
        raise UserError(texts.ERR_CONVERTER_FAILED.format(script=script, tail=tail))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.llama_cpp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--install", action="store_true", help=f"fetch {PACKAGE} {VERSION}'s converters")
    parser.add_argument("--sdist", type=Path, help="use this source archive instead of downloading it")
    args = parser.parse_args(argv)
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
