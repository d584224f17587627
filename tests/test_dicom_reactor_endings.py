"""How the gateway's reactor associations end, whatever the peer does.

A peer's A-RELEASE, A-ABORT or vanished connection, the network (idle) and ACSE
timeouts, TCP peers that never associate or send garbage, a peer stalled inside a PDU
and a DUL crash on a hostile command all end the association on the gateway's side,
which keeps serving. Real gateway, real peers on 127.0.0.1 (dcmtk ``echoscu``, pynetdicom
requestors, raw TCP sockets); correctness only, never speed.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.pdu import A_ABORT_RQ

from tests.peers import echoscu
from tests.reactor_support import (
    ABORT_HEADER,
    DEADLINE_S,
    gc_paused,
    open_fds,
    read_until_closed,
    record_events,
    the_acceptor,
    wait_ended,
    wait_threads_end,
)
from tests.service_support import StartGateway, association, wait_for

# ------------------------------------------------------------ how associations end


def release(probe: Association) -> None:
    probe.release()
    assert probe.is_released and not probe.is_aborted


def abort(probe: Association) -> None:
    probe.abort()
    assert probe.is_aborted


def vanish(probe: Association) -> None:
    """The requestor's TCP connection closes without A-RELEASE or A-ABORT (A-P-ABORT)."""
    probe.dul.socket.socket.shutdown(socket.SHUT_RDWR)
    wait_for(lambda: not probe.is_alive(), DEADLINE_S, "the probe to see the closed link")


@pytest.mark.peer
@pytest.mark.requirement("SRS-040")
@pytest.mark.parametrize(
    ("end", "event"),
    [(release, "EVT_RELEASED"), (abort, "EVT_ABORTED"), (vanish, "EVT_ABORTED")],
    ids=["release", "abort", "vanished"],
)
def test_peer_ending_the_association_ends_the_acceptor(
    start_gateway: StartGateway, end: Callable[[Association], None], event: str
) -> None:
    env = start_gateway()
    baseline = set(threading.enumerate())
    with association(env.port) as probe:
        acceptor = the_acceptor(env)
        fired = record_events(acceptor, evt.EVT_RELEASED, evt.EVT_ABORTED)
        assert probe.send_c_echo().Status == 0x0000
        end(probe)
        wait_ended(acceptor)
    assert fired == [event]
    assert acceptor.is_released == (event == "EVT_RELEASED")
    assert acceptor.is_aborted == (event == "EVT_ABORTED")
    assert acceptor.dul.state_machine.current_state == "Sta1"
    wait_threads_end(baseline, env.gateway)
    echoscu("127.0.0.1", env.port, "MINIVESS")


@pytest.mark.peer
@pytest.mark.requirement("SRS-040")
def test_network_timeout_aborts_a_silent_association(start_gateway: StartGateway) -> None:
    env = start_gateway()
    env.gateway.ae.network_timeout = 2.0  # each new association reads it
    baseline = set(threading.enumerate())
    with association(env.port) as probe:
        probe.network_timeout = 60  # the gateway, not the probe, must end this one
        received: list[Any] = []
        probe.bind(evt.EVT_PDU_RECV, lambda e: received.append(e.pdu))
        acceptor = the_acceptor(env)
        assert acceptor.dul._idle_timer.timeout == 2.0
        fired = record_events(acceptor, evt.EVT_RELEASED, evt.EVT_ABORTED)
        # Traffic restarts the idle timer: twice the timeout of steady echoes is no problem.
        until = time.monotonic() + 4.0
        while time.monotonic() < until:
            assert probe.send_c_echo().Status == 0x0000
            time.sleep(0.1)
        assert probe.is_established and acceptor.is_alive()
        # Then silence: the gateway sends A-ABORT (from the service user, PS3.8 9.3.8).
        wait_for(lambda: probe.is_aborted, DEADLINE_S, "the gateway to abort the association")
    aborts = [pdu for pdu in received if isinstance(pdu, A_ABORT_RQ)]
    assert [pdu.source for pdu in aborts] == [0x00]
    wait_ended(acceptor)
    assert acceptor.is_aborted and fired == ["EVT_ABORTED"]
    wait_threads_end(baseline, env.gateway)


def misbehave(address: tuple[str, int]) -> None:
    """TCP peers that never associate: each must be answered and closed by the gateway."""
    closes = socket.create_connection(address)
    closes.close()
    silent = socket.create_connection(address)
    # A PDU header of an unknown type; then the same followed by more garbage and a
    # hang-up. (A partial PDU without hang-up: test_peer_stalled_inside_a_pdu_...)
    unknown = socket.create_connection(address)
    unknown.sendall(b"\xff\x00\x00\x00\x00\x10")
    garbage = socket.create_connection(address)
    garbage.sendall(b"\xff\x00\x00\x00\x00\x10" + b"not a DICOM PDU!")
    garbage.shutdown(socket.SHUT_WR)
    # An A-ASSOCIATE-RQ announcing 1000 bytes, of which 10 come before the peer hangs up.
    truncated = socket.create_connection(address)
    truncated.sendall(b"\x01\x00\x00\x00\x03\xe8" + b"\x00\x01" + b"\x00" * 8)
    truncated.shutdown(socket.SHUT_WR)
    try:
        # An unknown PDU is answered with A-ABORT PDUs (PS3.8 9.2.3, AA-1), then closed.
        for sock in (unknown, garbage):
            answer = read_until_closed(sock)
            assert answer and len(answer) % 10 == 0, answer
            assert all(answer[i : i + 6] == ABORT_HEADER for i in range(0, len(answer), 10))
        assert read_until_closed(truncated) == b""
        assert read_until_closed(silent) == b""  # the ARTIM timer closes it
    finally:
        for sock in (silent, unknown, garbage, truncated):
            sock.close()


@pytest.mark.peer
@pytest.mark.requirement("SRS-040")
def test_tcp_peers_that_never_associate_leave_nothing_behind(
    start_gateway: StartGateway,
) -> None:
    env = start_gateway()
    env.gateway.ae.acse_timeout = 2.0  # the ARTIM timer and the wait for A-ASSOCIATE-RQ
    with gc_paused():
        fds, baseline = open_fds(), set(threading.enumerate())
        misbehave(("127.0.0.1", env.port))
        wait_threads_end(baseline, env.gateway)
        assert open_fds() <= fds
    assert env.gateway.ae.active_associations == []
    echoscu("127.0.0.1", env.port, "MINIVESS")
    with association(env.port) as probe:
        assert probe.send_c_echo().Status == 0x0000


@pytest.mark.peer
@pytest.mark.requirement("SRS-040")
def test_peer_stalled_inside_a_pdu_frees_its_association_slot(
    start_gateway: StartGateway,
) -> None:
    """A peer that sends part of a PDU and then stays connected, silent, must not hold
    an association slot for ever (pynetdicom alone blocks its DUL in recv() for good)."""
    env = start_gateway(max_associations=1)
    env.gateway.ae.network_timeout = 1.0  # bounds each read from the peer
    env.gateway.ae.acse_timeout = 1.0
    stalled = socket.create_connection(("127.0.0.1", env.port))
    try:
        # An A-ASSOCIATE-RQ announcing 1000 bytes, of which 10 come; no hang-up.
        stalled.sendall(b"\x01\x00\x00\x00\x03\xe8" + b"\x00\x01" + b"\x00" * 8)
        wait_for(lambda: len(env.gateway.ae.active_associations) == 1, DEADLINE_S,
                 "the stalled peer to take the only slot")  # fmt: skip
        started = time.monotonic()
        read_until_closed(stalled)  # the gateway hangs up on it
        assert time.monotonic() - started < DEADLINE_S, "the stalled peer kept its connection"
        wait_for(lambda: env.gateway.ae.active_associations == [], DEADLINE_S,
                 "the stalled peer's association to end")  # fmt: skip
        echoscu("127.0.0.1", env.port, "MINIVESS")  # the only slot is free again
    finally:
        stalled.close()


@pytest.mark.peer
@pytest.mark.requirement("SRS-040")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_dul_crash_on_a_hostile_command_ends_the_association(
    start_gateway: StartGateway,
) -> None:
    """A command set without Command Field makes pynetdicom's DUL thread raise.

    The association thread must notice the dead DUL at once (the network timeout, 60 s,
    is far off), close the connection and free its sockets.
    """
    env = start_gateway()
    with gc_paused():
        fds, baseline = open_fds(), set(threading.enumerate())
        with association(env.port) as probe:
            acceptor = the_acceptor(env)
            context_id = probe.accepted_contexts[0].context_id
            command = b"\x00\x00\x00\x00\x04\x00\x00\x00" + b"\x00" * 4  # group length only
            pdv = struct.pack(">IBB", len(command) + 2, context_id, 0x03) + command  # last command
            probe.dul.socket.send(struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv)  # P-DATA-TF
            wait_ended(acceptor)
            wait_for(lambda: not probe.is_alive(), DEADLINE_S, "the probe to see the link closed")
        assert not acceptor.is_established and not probe.is_established
        wait_threads_end(baseline, env.gateway)
        assert open_fds() <= fds
    echoscu("127.0.0.1", env.port, "MINIVESS")
