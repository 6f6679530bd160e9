"""The ground floor: what every layer uses (texts in both languages, UserError, paths, name rules).
It imports nothing of ours."""

import logging

# bitsandbytes warns on import, on every CPU with AVX512-BF16, that an optional kernel package from
# the Hub is missing (its fallback works; tests/test_qlora.py). PEFT imports it whenever it is
# installed, so without this every trainer's and evaluator's stderr would start with that line.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
