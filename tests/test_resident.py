"""engine.resident: one build per key for every thread, its progress drawn by each waiter's own thread."""

import threading

import pytest

from engine.resident import Resident


class Gate:
    """A build that reports a stage, then waits until the test lets it finish."""

    def __init__(self, value="model"):
        self.release = threading.Event()
        self.builds = []
        self.value = value

    def __call__(self, progress):
        self.builds.append(threading.current_thread().name)
        progress(0.5, "converting")
        assert self.release.wait(10)
        return self.value


def _wait_in_thread(resident, key, build, seen, results):
    def wait():
        results.append(resident.get(key, build, show_progress=lambda: lambda *state: seen.append(state)))

    thread = threading.Thread(target=wait)
    thread.start()
    return thread


def test_two_sessions_asking_at_once_share_one_build_and_both_see_its_progress():
    resident, gate = Resident(max_entries=2), Gate()
    first_seen, second_seen, results = [], [], []
    first = _wait_in_thread(resident, "base", gate, first_seen, results)
    second = _wait_in_thread(resident, "base", gate, second_seen, results)
    for seen in (first_seen, second_seen):
        for _ in range(200):
            if seen:
                break
            threading.Event().wait(0.05)
    gate.release.set()
    first.join(10), second.join(10)
    assert results == ["model", "model"] and len(gate.builds) == 1
    assert first_seen == second_seen == [(0.5, "converting")]
    assert gate.builds[0] == "build base", "built in a thread of its own, not a session's"
    assert resident.get("base", gate, show_progress=lambda: pytest.fail("progress once loaded")) == "model"


def test_a_waiter_whose_page_went_away_does_not_stop_the_build():
    resident, gate = Resident(max_entries=2), Gate()

    class PageGone(Exception):  # what Streamlit raises in a session's thread on a reload
        pass

    def gone(*_):
        raise PageGone

    with pytest.raises(PageGone):
        resident.get("base", gate, show_progress=lambda: gone)
    gate.release.set()
    assert resident.get("base", gate) == "model" and len(gate.builds) == 1


def test_a_failed_build_raises_in_the_waiter_and_is_tried_again_next_time():
    resident, attempts = Resident(max_entries=2), []

    def flaky(progress):
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("disk full")
        return "model"

    with pytest.raises(ValueError, match="disk full"):
        resident.get("base", flaky)
    assert not resident.loaded("base")
    assert resident.get("base", flaky) == "model" and len(attempts) == 2 and resident.loaded("base")


def test_the_least_recently_used_value_goes_when_the_cache_is_full():
    resident = Resident(max_entries=2)
    for key in ("a", "b"):
        resident.get(key, lambda progress, key=key: key)
    resident.get("a", lambda progress: pytest.fail("a is still loaded"))
    resident.get("c", lambda progress: "c")
    assert [resident.loaded(key) for key in ("a", "b", "c")] == [True, False, True]
