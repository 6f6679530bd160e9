#!/usr/bin/env bash
# The GPU checks in one run, one table (bench/gpu_suite.py says what each row measures).
#   bash bench/gpu_suite.sh            # a CUDA machine; refuses without one
#   bash bench/gpu_suite.sh --smoke    # the same steps on tiny configs on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
python=".venv/bin/python"
[ -x "$python" ] || python="python3"
exec "$python" bench/gpu_suite.py "$@"
