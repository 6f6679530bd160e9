"""Things loaded once per process and shared by every session: chat engines, tokenizers.

Each value is built in a thread of its own, never in a session's script thread, and reports its
progress into shared state that every waiting session reads and draws in its own thread. So a page
never hands a callback that touches the page into the build (Streamlit's own cache replays such
calls on the next hit, against a layout block that no longer exists: the chat page broke on every
visit after a first-visit conversion), a second tab opened during a conversion sees the same
progress instead of a frozen page, and a reload mid-conversion does not stop the conversion.
"""

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

Progress = Callable[[float, str], None]


class _Build:
    """One value under construction in its own thread; its latest progress, then its value or error."""

    def __init__(self, key: Hashable, build: Callable[[Progress], Any]):
        self._changed = threading.Condition()
        self.progress: tuple[float, str] | None = None
        self.done = False
        self.value = None
        self.error: BaseException | None = None
        threading.Thread(target=self._run, args=(build,), name=f"build {key}", daemon=True).start()

    def _report(self, fraction: float, stage: str) -> None:
        with self._changed:
            self.progress = (fraction, stage)
            self._changed.notify_all()

    def _run(self, build: Callable[[Progress], Any]) -> None:
        try:
            value, error = build(self._report), None
        except BaseException as caught:  # handed to every waiter, who raises it in its own thread
            value, error = None, caught
        with self._changed:
            self.value, self.error, self.done = value, error, True
            self._changed.notify_all()

    def wait(self, on_progress: Progress | None) -> Any:
        """The value, showing each change of progress while it is built (nothing once it is); raises
        what the build raised."""
        shown = None
        with self._changed:
            while not self.done:
                if on_progress is not None and self.progress is not None and self.progress != shown:
                    shown = self.progress
                    self._changed.release()  # draw without holding the build up
                    try:
                        on_progress(*shown)
                    finally:
                        self._changed.acquire()
                    continue
                self._changed.wait()
        if self.error is not None:
            raise self.error
        return self.value


class Resident:
    """A process-wide cache of at most `max_entries` values; the least recently used one goes first.
    A build that failed is forgotten, so the next request tries again."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._builds: OrderedDict[Hashable, _Build] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[Progress], Any], show_progress=None):
        """The value for `key`, built once by `build(progress)`. Only a caller that has to wait for
        a build calls `show_progress()`, in its own thread, for the callback that draws each change
        (a loaded value shows nothing)."""
        with self._lock:
            current = self._builds.get(key)
            if current is None:
                current = self._builds[key] = _Build(key, build)
                self._evict()
            self._builds.move_to_end(key)
        try:
            return current.wait(show_progress() if show_progress and not current.done else None)
        except BaseException:
            with self._lock:
                if self._builds.get(key) is current and current.done:
                    del self._builds[key]
            raise

    def _evict(self) -> None:
        finished = [key for key, build in self._builds.items() if build.done]
        while len(self._builds) > self.max_entries and finished:
            del self._builds[finished.pop(0)]

    def loaded(self, key: Hashable) -> bool:
        with self._lock:
            build = self._builds.get(key)
            return build is not None and build.done and build.error is None
