"""How a trainer obeys SIGTERM or Ctrl-C. No torch here: it is installed before anything heavy."""

import contextlib
import signal
import threading

# SIGHUP: a rank's launcher died (training.parallel.distributed.die_with_parent), not a user's cancel
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class JobCancelled(BaseException):
    """Raised in the main thread by a cancel that arrives while nothing needs finishing."""


class Cancellation:
    """SIGTERM or SIGINT (Ctrl-C). While the job prepares, loads or waits, the signal raises
    JobCancelled at once; while it trains or publishes (`deferred`), it only sets `requested`, and
    the training loop stops after the current micro-batch with a checkpoint saved."""

    def __init__(self):
        self.requested = threading.Event()
        # the stop came from a dead launcher: the job is interrupted, not cancelled
        self.launcher_lost = threading.Event()
        self._deferred = False

    def install(self) -> None:
        self._previous = {number: signal.signal(number, self._on_signal) for number in SIGNALS}

    def uninstall(self) -> None:
        for number, handler in getattr(self, "_previous", {}).items():
            signal.signal(number, handler)

    def _on_signal(self, number, _frame) -> None:
        if number == signal.SIGHUP:
            self.launcher_lost.set()
        self.requested.set()
        if not self._deferred:
            raise JobCancelled

    @contextlib.contextmanager
    def deferred(self):
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False

    def raise_if_requested(self) -> None:
        if self.requested.is_set():
            raise JobCancelled
