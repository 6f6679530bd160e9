"""The suite's own machinery: what a failing test leaves running is found and ended."""

import subprocess
import sys
import time

from tests.conftest import _clock_ticks, _kill, _processes_of_this_run


def test_a_process_the_test_started_is_found_by_its_mark_and_start_time_and_ended():
    began = _clock_ticks()
    time.sleep(0.02)  # a clock tick is 10 ms: the child starts in a later one
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    detached = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True, env={"PATH": "/bin"}
    )
    try:
        found = dict(_processes_of_this_run(since=began))
        assert child.pid in found, "a child carries the run's mark"
        assert detached.pid not in found, "a process without the mark is not this run's"
        assert child.pid not in dict(_processes_of_this_run(since=found[child.pid] + 1)), (
            "a process started before the test began is left alone"
        )
        _kill((child.pid, found[child.pid] + 1))  # another start time: a reused pid, not ours
        assert child.poll() is None
        _kill((child.pid, found[child.pid]))
        assert child.wait(timeout=10) == -9
    finally:
        for process in (child, detached):
            process.kill()
            process.wait()
