"""A worker for tests/test_warm.py, run as `python -m tests.warm_probe OUT [late-handler]`: writes
what it finds at its start to OUT; with late-handler, it installs its SIGTERM handler only after
half a second and records whether a SIGTERM reached it."""

import json
import os
import signal
import sys
import time

torch_was_imported = "torch" in sys.modules  # read before anything here imports it


def write(out: str, facts: dict) -> None:
    with open(out + ".tmp", "w") as file:
        json.dump(facts, file)
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    import studio.warm

    out = sys.argv[1]
    print(f"probe writes {out}")
    if sys.argv[2:] == ["late-handler"]:
        time.sleep(0.5)
        signal.signal(signal.SIGTERM, lambda signum, frame: (write(out, {"stopped": True}), sys.exit(143)))
        time.sleep(10)
        write(out, {"stopped": False})
        sys.exit(0)
    write(
        out,
        {
            "argv": sys.argv[1:],
            "pid": os.getpid(),
            "session": os.getsid(0),
            "cwd": os.getcwd(),
            "torch_was_imported": torch_was_imported,
            "probe_variable": os.environ.get("TRANSLATOR_WARM_PROBE"),
            "stdin": os.readlink("/proc/self/fd/0"),
            "warm_module_fresh": studio.warm.serving_since is None,
        },
    )
