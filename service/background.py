"""The service's background threads (worker, exporter, grouper): one loop, written once.

Each runs :meth:`BackgroundLoop.step` until stopped; a step does one pass and returns how
long to wait for the next (0: go on at once), and ``notify()`` cuts the wait short. A
pass that raises is logged and the loop goes on after ``retry_s``: a journal hiccup must
never kill a thread.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class BackgroundLoop:
    """A daemon thread ``minivess-<name>`` running ``step()`` until ``stop()``."""

    def __init__(self, name: str, stop_timeout_s: float, retry_s: float = 1.0) -> None:
        self.name = name
        self.stop_timeout_s = stop_timeout_s
        self.retry_s = retry_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"minivess-{name}", daemon=True)

    def step(self) -> float:
        """One pass; the seconds to wait before the next."""
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """Wake the thread now (new work is in the journal)."""
        self._wake.set()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the current pass (waiting ``stop_timeout_s`` unless told otherwise)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(self.stop_timeout_s if timeout is None else timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception:
                log.exception("%s pass failed", self.name)
                wait = self.retry_s
            self._wake.wait(wait)
            self._wake.clear()
