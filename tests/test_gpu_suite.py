"""bench/gpu_suite.sh, the one prepared GPU check: without CUDA it refuses, saying what to do."""

import subprocess

import pytest

from tests.conftest import PROJECT_ROOT


def test_the_gpu_suite_refuses_without_a_gpu_and_names_the_smoke_run():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the suite would run")
    result = subprocess.run(
        ["bash", "bench/gpu_suite.sh"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "refused: no CUDA GPU here" in result.stderr and "--smoke" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
