"""The floors (pyproject.toml [tool.importlinter]) hold on the code as it is, and the contracts fail
on what they exist to stop: an import that points up, and a circle inside a package."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.home import PROJECT_ROOT

PACKAGES = ("core", "registry", "engine", "studio", "training", "exporters", "serving", "ui", "pages")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_code_keeps_every_import_contract_with_no_exceptions_listed():
    import tomllib

    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "importlinter"
    ]
    assert sorted(config["root_packages"]) == sorted(PACKAGES)
    assert all("ignore_imports" not in contract for contract in config["contracts"])
    result = _lint_imports(PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.fixture
def copy_of_the_code(tmp_path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            PROJECT_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("core/home.py", "from ui import common", "Each floor imports only the floors below it BROKEN"),
        (
            "registry/jobs.py",
            "from engine import formats",
            "Each floor imports only the floors below it BROKEN",
        ),
        (
            "engine/roles.py",
            "from engine import formats",
            "No import circles among the modules of a package BROKEN",
        ),
        (
            "training/data/datasets.py",
            "from training.jobs import plans",
            "Each room of training imports only the rooms below it BROKEN",
        ),
        (
            "engine/decoding.py",
            "from engine.reply_text import ReplyText",
            "The chat engine uses routing, decoding and reply text, which are independent BROKEN",
        ),
        (
            "serving/api.py",
            "from exporters import merge",
            "Each floor imports only the floors below it BROKEN",
        ),
    ],
    ids=[
        "upward",
        "between siblings",
        "circle",
        "training room upward",
        "engine parts",
        "server to exporters",
    ],
)
def test_an_upward_import_a_sibling_import_or_a_circle_breaks_a_contract(
    copy_of_the_code, module, line, broken
):
    path = copy_of_the_code / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    result = _lint_imports(copy_of_the_code)
    assert result.returncode != 0 and broken in result.stdout, result.stdout + result.stderr
