"""The gateway's event-driven reactors and its directly encoded Part 10 file header.

:mod:`service.dicom_reactor` replaces pynetdicom's two polling loops per acceptor
association. These tests drive a real gateway with real peers on 127.0.0.1 (dcmtk
``echoscu``/``storescu``, pynetdicom requestors, raw TCP sockets) and check correctness
only, never speed:

* the pynetdicom version whose loops the reactors copy, and that only the gateway's
  acceptor associations get them (the export's requestors and other servers do not);
* sequential, parallel and finely fragmented traffic all succeeds, and every association
  and DUL thread ends afterwards;
* a peer's A-RELEASE, A-ABORT or vanished connection, the network (idle) and ACSE
  timeouts, and TCP peers that never associate or send garbage all end the association
  on the gateway's side, which keeps serving;
* :func:`make_event_driven` on a fresh association and its refusal of a running one;
* :func:`service.part10.file_header` against pydicom's reading, pynetdicom's own encoding
  and dcmtk's ``dcmdump``.
"""

from __future__ import annotations

import gc
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pynetdicom
import pytest
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    generate_uid,
)
from pynetdicom import AE, PYNETDICOM_IMPLEMENTATION_UID, evt
from pynetdicom.association import Association
from pynetdicom.dsutils import create_file_meta, encode_file_meta, split_dataset
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import AssociationSocket, RequestHandler

import service.export
from service.dicom_reactor import (
    TESTED_PYNETDICOM,
    EventDrivenAssociation,
    EventDrivenDUL,
    EventDrivenRequestHandler,
    make_event_driven,
)
from service.export import store_files
from service.gateway import Gateway
from service.part10 import file_header
from service.settings import ExportDestination
from tests.peers import PEER_ENV, echoscu, require_executable, run_dciodvfy, storescu
from tests.service_support import (
    CT_IMAGE,
    GatewayEnv,
    StartGateway,
    association,
    make_study,
    metric,
    wait_for,
)

VERIFICATION = "1.2.840.10008.1.1"
# Only a guard against hangs: every wait below normally ends far sooner.
DEADLINE_S = 10.0
ABORT_HEADER = b"\x07\x00\x00\x00\x00\x04"  # A-ABORT PDU: type 7, length 4 (PS3.8 9.3.8)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Any:
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


# --------------------------------------------------------------------------- versions


def test_pynetdicom_is_the_version_the_reactors_mirror() -> None:
    assert pynetdicom.__version__ == TESTED_PYNETDICOM, (
        f"pynetdicom {pynetdicom.__version__} is installed, but service/dicom_reactor.py "
        f"mirrors the loops of pynetdicom {TESTED_PYNETDICOM}: compare the new version's "
        "DULServiceProvider.run_reactor/stop_dul/send_pdu, Association._run_reactor/kill "
        "and RequestHandler._create_association with the copies in dicom_reactor.py, "
        "adapt them, then raise TESTED_PYNETDICOM"
    )


# ------------------------------------------------------------------ who gets reactors


@pytest.mark.peer
@pytest.mark.requirement("SRS-040")
def test_gateway_acceptors_run_the_event_driven_reactors(start_gateway: StartGateway) -> None:
    env = start_gateway()
    with association(env.port) as probe:
        assert probe.is_established
        acceptor = the_acceptor(env)
        assert type(acceptor) is EventDrivenAssociation
        assert type(acceptor.dul) is EventDrivenDUL and acceptor.dul.is_alive()
        assert acceptor.dul.assoc is acceptor and acceptor.acse.assoc is acceptor
        socket_ = acceptor.dul.socket
        assert isinstance(socket_, AssociationSocket) and socket_.assoc is acceptor
        # Only the new DUL runs; pynetdicom's original one was never started.
        duls = [t for t in reactor_threads(env.gateway) if isinstance(t, DULServiceProvider)]
        assert duls == [acceptor.dul]
        # The timers live in the DUL: the AE's timeouts were written through to the new one.
        assert acceptor.dul._idle_timer.timeout == env.gateway.ae.network_timeout == 60
        assert acceptor.dul.artim_timer.timeout == env.gateway.ae.acse_timeout == 30
        assert probe.send_c_echo().Status == 0x0000
        # The probe, a requestor in this same process, keeps pynetdicom's classes.
        assert type(probe) is Association and type(probe.dul) is DULServiceProvider


@pytest.mark.peer
@pytest.mark.requirement("SRS-040")
def test_export_requestors_and_other_servers_keep_pynetdicoms_reactors(
    start_gateway: StartGateway, study: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = start_gateway()
    seen: list[tuple[type, type, str]] = []
    original = service.export.on_conn_open

    def spy(event: Any) -> None:  # EVT_CONN_OPEN of the export's own association
        seen.append((type(event.assoc), type(event.assoc.dul), event.assoc.mode))
        original(event)

    monkeypatch.setattr(service.export, "on_conn_open", spy)
    destination = ExportDestination(host="127.0.0.1", port=env.port, ae_title="MINIVESS")
    store_files(destination, study.files[:2], "MINIVESS_EXPORT", timeout=10)
    assert seen == [(Association, DULServiceProvider, "requestor")]
    kept = sorted(p.name for p in (env.settings.spool_dir / study.study_instance_uid).iterdir())
    assert kept == sorted(f"{uid}.dcm" for uid in study.sop_instance_uids[:2])

    # A server started the ordinary pynetdicom way in this process is not touched either.
    assert RequestHandler._create_association is not EventDrivenRequestHandler._create_association
    plain = AE(ae_title="PLAIN")
    plain.add_supported_context(VERIFICATION)
    server = plain.start_server(("127.0.0.1", 0), block=False)
    assert server is not None
    try:
        with association(server.server_address[1], called="PLAIN") as probe:
            assert probe.is_established and probe.send_c_echo().Status == 0x0000
            (acceptor,) = plain.active_associations
            assert type(acceptor) is Association and type(acceptor.dul) is DULServiceProvider
    finally:
        plain.shutdown()


# ----------------------------------------------------------------------- traffic


@pytest.mark.peer
@pytest.mark.requirement("SRS-040", "SRS-042")
def test_many_sequential_associations_leave_no_thread(
    start_gateway: StartGateway, study: Any
) -> None:
    env = start_gateway()
    with gc_paused():
        fds, baseline = open_fds(), set(threading.enumerate())
        for _ in range(20):
            echoscu("127.0.0.1", env.port, "MINIVESS")
        storescu("127.0.0.1", env.port, "MINIVESS", study.files)
        for _ in range(5):  # pynetdicom requestors as well, each echoing and releasing
            with association(env.port) as probe:
                assert [probe.send_c_echo().Status for _ in range(3)] == [0, 0, 0]
                assert probe.is_established
            assert probe.is_released
        wait_threads_end(baseline, env.gateway)
        assert open_fds() <= fds  # every socket (the wake-up pairs too) was closed
    assert env.gateway.ae.active_associations == []
    kept = sorted(p.name for p in (env.settings.spool_dir / study.study_instance_uid).iterdir())
    assert kept == sorted(f"{uid}.dcm" for uid in study.sop_instance_uids)
    received = metric(env.metrics.registry, "minivess_instances_received_total", interface="dimse")
    assert received == len(study.files)


@pytest.mark.peer
@pytest.mark.requirement("SRS-040", "SRS-042")
def test_parallel_associations_all_succeed(start_gateway: StartGateway, study: Any) -> None:
    env = start_gateway(max_associations=10)
    baseline = set(threading.enumerate())
    target = ["-aet", "MINIVESS_TEST", "-aec", "MINIVESS", "127.0.0.1", str(env.port)]
    commands = [[require_executable("echoscu"), "--repeat", "20", *target] for _ in range(4)]
    for part in range(4):  # four senders, each with its share of the study
        files = [str(f) for f in study.files[part::4]]
        commands.append([require_executable("storescu"), *target, *files])
    peers = [
        subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=PEER_ENV
        )
        for cmd in commands
    ]
    try:
        for cmd, peer in zip(commands, peers, strict=True):
            output, _ = peer.communicate(timeout=60)
            errors = [line for line in output.splitlines() if line.startswith(("E:", "F:"))]
            assert peer.returncode == 0 and not errors, f"{' '.join(cmd)}:\n{output}"
    finally:
        for peer in peers:  # only on failure: a peer still running is ended
            if peer.poll() is None:
                peer.kill()
                peer.wait()
    kept = sorted(p.name for p in (env.settings.spool_dir / study.study_instance_uid).iterdir())
    assert kept == sorted(f"{uid}.dcm" for uid in study.sop_instance_uids)
    wait_threads_end(baseline, env.gateway)


@pytest.mark.peer
@pytest.mark.requirement("SRS-040", "SRS-042")
def test_instance_in_many_small_pdus_is_spooled_intact(
    start_gateway: StartGateway, study: Any, tmp_path: Path
) -> None:
    """storescu cuts a 128 KiB slice into 4 KiB PDUs; the spool keeps it exactly."""
    env = start_gateway()
    ds = pydicom.dcmread(study.files[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Rows = ds.Columns = 256
    rng = np.random.default_rng(7)
    ds.PixelData = rng.integers(0, 2**12, (256, 256), dtype=np.uint16).tobytes()
    source = tmp_path / "large.dcm"
    ds.save_as(source, enforce_file_format=True)
    storescu("127.0.0.1", env.port, "MINIVESS", [source], ["--max-send-pdu", "4096"])

    kept_path = env.spool.path_of(study.study_instance_uid, str(ds.SOPInstanceUID))
    kept = pydicom.dcmread(kept_path)
    sent = pydicom.dcmread(source)
    assert kept == sent and kept.PixelData == sent.PixelData
    meta = kept.file_meta
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert meta.MediaStorageSOPClassUID == CT_IMAGE == sent.SOPClassUID
    assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert meta.ImplementationClassUID == env.gateway.ae.implementation_class_uid
    assert meta.SourceApplicationEntityTitle == "MINIVESS_TEST"
    # dcmtk reads the spooled file as a Part 10 file (meta header required) ...
    done = run_dcmtk([require_executable("dcmdump"), "+fo", str(kept_path)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(0002,0016) AE [MINIVESS_TEST]" in done.stdout
    assert str(ds.SOPInstanceUID) in done.stdout
    # ... and the gateway adds no IOD error to what was sent.
    added = set(run_dciodvfy(kept_path).errors) - set(run_dciodvfy(source).errors)
    assert not added, added


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


# ------------------------------------------------------------- make_event_driven


def test_make_event_driven_moves_a_fresh_association_to_the_new_dul() -> None:
    ae = AE(ae_title="UNIT")
    ae.network_timeout = 7
    ae.acse_timeout = 3
    ours, theirs = socket.socketpair()
    assoc = Association(ae, "acceptor")
    sock = AssociationSocket(assoc, client_socket=ours)  # queues Evt5 (connection open)
    assoc.set_socket(sock)
    original = assoc.dul
    made = make_event_driven(assoc)
    dul = made.dul
    try:
        assert made is assoc and type(assoc) is EventDrivenAssociation
        assert type(dul) is EventDrivenDUL and dul is not original
        assert dul.assoc is assoc and dul.socket is sock and sock.event_queue is dul.event_queue
        assert dul.event_queue.get_nowait() == "Evt5"
        assert dul._idle_timer.timeout == assoc.network_timeout == 7
        assert dul.artim_timer.timeout == assoc.acse_timeout == 3
        assert dul.state_machine.current_state == "Sta1"
        assert not assoc._started_dul and not dul.is_alive() and not original.is_alive()
    finally:
        sock.close()
        theirs.close()
        dul._wake_recv.close()  # a DUL that ran closes its wake-up pair itself
        dul._wake_send.close()


@pytest.mark.peer
def test_make_event_driven_refuses_a_running_association(
    start_gateway: StartGateway,
) -> None:
    env = start_gateway()
    with association(env.port) as probe:
        acceptor = the_acceptor(env)
        dul = acceptor.dul
        for running in (probe, acceptor):
            with pytest.raises(RuntimeError, match="already runs"):
                make_event_driven(running)
        assert type(probe) is Association and type(probe.dul) is DULServiceProvider
        assert acceptor.dul is dul
        assert probe.send_c_echo().Status == 0x0000  # both ends still work


# --------------------------------------------------------------------- part10


@pytest.fixture(scope="module")
def encoded(study: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One Part 10 file per transfer syntax: Explicit VR LE, Implicit VR LE, JPEG-LS."""
    folder = tmp_path_factory.mktemp("syntaxes")
    implicit = pydicom.dcmread(study.files[0])
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    implicit.save_as(folder / "implicit.dcm", implicit_vr=True, little_endian=True,
                     enforce_file_format=True)  # fmt: skip
    jpeg_ls = make_study(folder / "jpeg_ls", seed=52, jpeg_ls=True)
    return {
        str(ExplicitVRLittleEndian): study.files[0],
        str(ImplicitVRLittleEndian): folder / "implicit.dcm",
        str(JPEGLSLossless): jpeg_ls.files[0],
    }


# (SOP Instance UID, Implementation Class UID, version name, AE title): odd and even
# lengths of each, empty optional values, the longest AE title.
IDENTITIES = [
    ("1.2.3.4", PYNETDICOM_IMPLEMENTATION_UID, "PYNETDICOM_304", "MINIVESS_TEST"),
    ("1.2.3.45", "1.2.34", "X", "AE"),
    ("1.2.826.0.1.3680043.8.498.123456789", "1.2.3", "", ""),
    ("2.25.12345678901234567890", "1.2.840.1", "VERSION_16_CHARS", "ABCDEFGHIJKLMNOP"),
]


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless])
@pytest.mark.parametrize("identity", IDENTITIES, ids=lambda i: f"uid{len(i[0])}-ae{len(i[3])}")
def test_file_header_reads_back_exactly(
    encoded: dict[str, Path], syntax: UID, identity: tuple[str, str, str, str]
) -> None:
    instance, implementation, version, ae_title = identity
    source = encoded[str(syntax)]
    _, offset = split_dataset(source)
    payload = source.read_bytes()[offset:]
    header = file_header(
        CT_IMAGE, instance, str(syntax),
        implementation_class_uid=implementation,
        implementation_version_name=version,
        source_ae_title=ae_title,
    )  # fmt: skip
    assert header[:132] == b"\0" * 128 + b"DICM" and len(header) % 2 == 0

    ds = pydicom.dcmread(BytesIO(header + payload))
    meta = ds.file_meta
    assert meta.FileMetaInformationGroupLength == len(header) - 132 - 12
    assert meta.FileMetaInformationVersion == b"\0\1"
    assert meta.MediaStorageSOPClassUID == CT_IMAGE
    assert meta.MediaStorageSOPInstanceUID == instance
    assert meta.TransferSyntaxUID == syntax
    assert meta.ImplementationClassUID == implementation
    assert meta.ImplementationVersionName == version
    assert meta.SourceApplicationEntityTitle == ae_title
    assert [f"{element.tag:08X}" for element in meta] == [
        "00020000", "00020001", "00020002", "00020003", "00020010", "00020012", "00020013",
        "00020016",
    ]  # fmt: skip
    # The data set reads as the one sent, in the syntax the header names.
    sent = pydicom.dcmread(source)
    assert ds == sent
    assert ds.original_encoding == sent.original_encoding
    assert ds.PixelData == sent.PixelData

    # Byte for byte what pynetdicom's own encoder writes for the same values.
    expected = create_file_meta(
        sop_class_uid=UID(CT_IMAGE),
        sop_instance_uid=UID(instance),
        transfer_syntax=syntax,
        implementation_uid=UID(implementation),
        implementation_version=version,
    )
    expected.SourceApplicationEntityTitle = ae_title
    assert header[132:] == encode_file_meta(expected)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"source_ae_title": "MÜNCHEN"}, "not ASCII"),
        ({"implementation_version_name": "VERSIÓN"}, "not ASCII"),
        ({"sop_instance_uid": "1.2.3.\u0664"}, "not ASCII"),
        ({"sop_instance_uid": "1." * 40_000}, "longer than 65535"),
    ],
    ids=["ae-title", "version-name", "uid", "too-long"],
)
def test_file_header_refuses_what_it_cannot_encode(values: dict[str, str], message: str) -> None:
    arguments = {
        "sop_class_uid": CT_IMAGE,
        "sop_instance_uid": "1.2.3",
        "transfer_syntax_uid": str(ExplicitVRLittleEndian),
        "implementation_class_uid": "1.2.3",
        "implementation_version_name": "V1",
        "source_ae_title": "AE",
        **values,
    }
    with pytest.raises(ValueError, match=message):
        file_header(**arguments)
