"""The gateway's event-driven reactors: who gets them, and traffic through them.

:mod:`service.dicom_reactor` replaces pynetdicom's two polling loops per acceptor
association. These tests drive a real gateway with real peers on 127.0.0.1 (dcmtk
``echoscu``/``storescu``, pynetdicom requestors) and check correctness only, never speed:

* the pynetdicom version whose loops the reactors copy, and that only the gateway's
  acceptor associations get them (the export's requestors and other servers do not);
* sequential, parallel and finely fragmented traffic all succeeds, and every association
  and DUL thread ends afterwards;
* :func:`make_event_driven` on a fresh association and its refusal of a running one.

How associations end: tests/test_dicom_reactor_endings.py; the directly encoded Part 10
file header: tests/test_part10_header.py; what they share: tests/reactor_support.py.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pynetdicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
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
from service.settings import ExportDestination
from tests.peers import PEER_ENV, echoscu, require_executable, run_dciodvfy, storescu
from tests.reactor_support import (
    VERIFICATION,
    gc_paused,
    open_fds,
    reactor_threads,
    run_dcmtk,
    study_fixture,  # noqa: F401  (the study fixture)
    the_acceptor,
    wait_threads_end,
)
from tests.service_support import CT_IMAGE, StartGateway, association, metric

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
