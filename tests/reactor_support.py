"""What the gateway reactor tests share (tests/test_dicom_reactor.py,
tests/test_dicom_reactor_endings.py, tests/test_part10_header.py): a study, the gateway's
association and DUL threads, and waits for them to end. A test module imports
``study_fixture`` to get the ``study`` fixture.
"""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider

from service.gateway import Gateway
from tests.peers import PEER_ENV
from tests.service_support import GatewayEnv, make_study, wait_for

VERIFICATION = "1.2.840.10008.1.1"
# Only a guard against hangs: every wait below normally ends far sooner.
DEADLINE_S = 10.0
ABORT_HEADER = b"\x07\x00\x00\x00\x00\x04"  # A-ABORT PDU: type 7, length 4 (PS3.8 9.3.8)


@pytest.fixture(scope="module", name="study")
def study_fixture(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One synthetic CT study (a test module that imports this fixture gets its own)."""
    return make_study(tmp_path_factory.mktemp("study"), seed=51)


def reactor_threads(gateway: Gateway) -> list[threading.Thread]:
    """The gateway AE's association and DUL threads still alive."""
    return [
        thread
        for thread in threading.enumerate()
        if (isinstance(thread, Association) and thread.ae is gateway.ae)
        or (isinstance(thread, DULServiceProvider) and thread.assoc.ae is gateway.ae)
    ]


def wait_threads_end(baseline: set[threading.Thread], gateway: Gateway) -> None:
    """Every thread started since ``baseline`` ends, the gateway's reactors included."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        left = [t for t in threading.enumerate() if t not in baseline] + reactor_threads(gateway)
        if not left:
            return
        if time.monotonic() > deadline:
            names = sorted({f"{type(t).__name__}:{t.name}" for t in left})
            raise AssertionError(f"threads left over after {DEADLINE_S} s: {names}")
        time.sleep(0.05)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Without the cyclic GC, a socket is closed only if the code closes it."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def wait_ended(assoc: Association) -> None:
    wait_for(
        lambda: not assoc.is_alive() and not assoc.dul.is_alive(),
        DEADLINE_S,
        "the acceptor's association and DUL threads to end",
    )


def the_acceptor(env: GatewayEnv) -> Association:
    (acceptor,) = env.gateway.ae.active_associations
    return acceptor


def record_events(assoc: Association, *events: Any) -> list[str]:
    """Names of the given notification events, in the order ``assoc`` fires them."""
    fired: list[str] = []
    for event in events:
        assoc.bind(event, lambda e: fired.append(e.event.name))
    return fired


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the gateway sends until it closes the connection (or resets it)."""
    sock.settimeout(DEADLINE_S)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def run_dcmtk(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=PEER_ENV, timeout=60)
