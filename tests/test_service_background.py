"""BackgroundLoop: the one loop of the worker, exporter and grouper threads."""

from __future__ import annotations

import threading
import time

import pytest

from service.background import BackgroundLoop


class Counting(BackgroundLoop):
    def __init__(self, wait: float, fail_first: bool = False) -> None:
        super().__init__("counting", stop_timeout_s=5.0, retry_s=0.01)
        self.wait, self.fail_first, self.passes = wait, fail_first, 0
        self.passed = threading.Event()

    def step(self) -> float:
        self.passes += 1
        self.passed.set()
        if self.fail_first and self.passes == 1:
            raise RuntimeError("journal busy")
        return self.wait


def test_notify_wakes_a_waiting_loop_and_stop_ends_it() -> None:
    loop = Counting(wait=60.0)
    loop.start()
    assert loop.passed.wait(5) and loop.is_alive()
    loop.passed.clear()
    loop.notify()
    assert loop.passed.wait(5)  # long before the 60 s wait
    started = time.monotonic()
    loop.stop()
    assert not loop.is_alive() and time.monotonic() - started < 5
    assert loop._thread.name == "minivess-counting"


def test_a_failing_pass_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    loop = Counting(wait=0.01, fail_first=True)
    loop.start()
    deadline = time.monotonic() + 5
    while loop.passes < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    loop.stop()
    assert loop.passes >= 3
    assert "counting pass failed" in caplog.text
