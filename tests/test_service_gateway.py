"""The DICOM gateway on its own (no pipeline): associations, C-ECHO, C-STORE statuses.

Real peers: dcmtk ``echoscu``/``storescu``; pynetdicom as a probe where the exact
A-ASSOCIATE-RJ reason or C-STORE status matters.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import _config
from pynetdicom.dsutils import split_dataset

from tests.peers import PEER_ENV, echoscu, require_executable, storescu
from tests.service_support import (
    CT_IMAGE,
    StartGateway,
    association,
    make_study,
    metric,
    truncated_copy,
    wait_for,
)

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_study(tmp_path_factory.mktemp("study"), seed=21)


def _dcmtk(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=PEER_ENV, timeout=60)


@pytest.mark.requirement("SRS-040")
def test_echoscu_is_answered(start_gateway: StartGateway) -> None:
    env = start_gateway()
    echoscu("127.0.0.1", env.port, "MINIVESS")


@pytest.mark.requirement("SRS-041")
def test_wrong_called_ae_title_is_rejected(start_gateway: StartGateway) -> None:
    env = start_gateway()
    done = _dcmtk([require_executable("echoscu"), "-aec", "NOT_US", "127.0.0.1", str(env.port)])
    assert done.returncode != 0
    assert "Called AE Title Not Recognized" in done.stdout + done.stderr
    with association(env.port, called="NOT_US") as assoc:
        assert assoc.is_rejected
        rj = assoc.acceptor.primitive
        assert (rj.result, rj.result_source, rj.diagnostic) == (1, 1, 7)


@pytest.mark.requirement("SRS-041")
def test_allowlist_admits_listed_peers_only(start_gateway: StartGateway) -> None:
    env = start_gateway(allowlist=[{"ae_title": "MINIVESS_TEST", "ip": "127.0.0.0/8"}])
    echoscu("127.0.0.1", env.port, "MINIVESS", calling_aet="MINIVESS_TEST")
    exe = require_executable("echoscu")
    done = _dcmtk([exe, "-aet", "INTRUDER", "-aec", "MINIVESS", "127.0.0.1", str(env.port)])
    assert done.returncode != 0
    assert "Calling AE Title Not Recognized" in done.stdout + done.stderr
    with association(env.port, calling="INTRUDER") as assoc:
        rj = assoc.acceptor.primitive
        assert assoc.is_rejected and (rj.result, rj.result_source, rj.diagnostic) == (1, 1, 3)
    # A listed AE title from an address off the list is refused as well.
    other = start_gateway(allowlist=[{"ae_title": "MINIVESS_TEST", "ip": "10.1.2.3"}])
    with association(other.port) as assoc:
        assert assoc.is_rejected and assoc.acceptor.primitive.diagnostic == 3


@pytest.mark.requirement("SRS-041")
def test_association_limit(start_gateway: StartGateway) -> None:
    env = start_gateway(max_associations=1)
    with association(env.port) as first:
        assert first.is_established
        with association(env.port) as second:
            rj = second.acceptor.primitive
            assert second.is_rejected and (rj.result, rj.result_source, rj.diagnostic) == (2, 3, 2)
    wait_for(lambda: not env.gateway.ae.active_associations, 10, "the associations to end")
    with association(env.port) as third:
        assert third.is_established


@pytest.mark.requirement("SRS-040", "SRS-042")
def test_storescu_study_is_spooled_and_journaled(
    start_gateway: StartGateway, study: Any, tmp_path: Path
) -> None:
    env = start_gateway()
    storescu("127.0.0.1", env.port, "MINIVESS", study.files)
    spooled = sorted(p.name for p in (env.settings.spool_dir / study.study_instance_uid).iterdir())
    assert spooled == sorted(f"{uid}.dcm" for uid in study.sop_instance_uids)
    # Byte for byte what was sent (explicit VR LE in, explicit VR LE accepted).
    sent = pydicom.dcmread(study.files[0])
    kept = pydicom.dcmread(env.spool.path_of(study.study_instance_uid, str(sent.SOPInstanceUID)))
    assert kept.PixelData == sent.PixelData and kept.PatientID == sent.PatientID
    (job,) = env.journal.list_jobs()
    assert (job.state, job.instances) == ("received", len(study.files))
    assert not list(env.spool.tmp.iterdir())
    assert metric(env.metrics.registry, "minivess_instances_received_total", interface="dimse") == (
        len(study.files)
    )
    held = sum(p.stat().st_size for p in (env.settings.spool_dir).rglob("*.dcm"))
    assert metric(env.metrics.registry, "minivess_spool_bytes") == held


@pytest.mark.requirement("SRS-040")
def test_compressed_study_is_accepted(start_gateway: StartGateway, tmp_path: Path) -> None:
    env = start_gateway()
    jpeg_ls = make_study(tmp_path / "jls", seed=22, jpeg_ls=True)
    storescu("127.0.0.1", env.port, "MINIVESS", jpeg_ls.files)
    kept = pydicom.dcmread(next((env.settings.spool_dir / jpeg_ls.study_instance_uid).iterdir()))
    assert kept.file_meta.TransferSyntaxUID == JPEGLSLossless  # lossless kept as sent
    assert env.journal.list_jobs()[0].instances == len(jpeg_ls.files)


@pytest.mark.requirement("SRS-042")
def test_duplicate_instance_is_idempotent(start_gateway: StartGateway, study: Any) -> None:
    env = start_gateway()
    ds = pydicom.dcmread(study.files[0])
    with association(env.port, contexts=[(CT_IMAGE, ExplicitVRLittleEndian)]) as assoc:
        assert assoc.send_c_store(ds).Status == 0x0000
        assert assoc.send_c_store(ds).Status == 0x0000
    assert len(list((env.settings.spool_dir / study.study_instance_uid).iterdir())) == 1
    assert env.journal.list_jobs()[0].instances == 1
    registry = env.metrics.registry
    assert metric(registry, "minivess_instances_duplicate_total", interface="dimse") == 1
    assert metric(registry, "minivess_instances_received_total", interface="dimse") == 1


@pytest.mark.requirement("SRS-042")
def test_disk_watermark_answers_out_of_resources(start_gateway: StartGateway, study: Any) -> None:
    env = start_gateway(min_free_disk_bytes=2**62)
    ds = pydicom.dcmread(study.files[0])
    with association(env.port, contexts=[(CT_IMAGE, ExplicitVRLittleEndian)]) as assoc:
        status = assoc.send_c_store(ds)
    assert status.Status == 0xA700 and "watermark" in status.ErrorComment
    assert not (env.settings.spool_dir / study.study_instance_uid).exists()
    assert env.journal.list_jobs() == []
    assert metric(env.metrics.registry, "minivess_instances_rejected_total",
                  interface="dimse", reason="disk-full") == 1  # fmt: skip


@pytest.mark.filterwarnings("ignore:Expected explicit VR")
@pytest.mark.requirement("SRS-040")
def test_corrupt_instances_get_specific_statuses(
    start_gateway: StartGateway, study: Any, tmp_path: Path
) -> None:
    env = start_gateway()
    truncated = tmp_path / "truncated.dcm"
    truncated_copy(study.files[0], truncated)
    # Garbage after valid file meta: pynetdicom sends the raw bytes when chunking.
    garbage = tmp_path / "garbage.dcm"
    _, offset = split_dataset(study.files[1])
    garbage.write_bytes(study.files[1].read_bytes()[:offset] + b"garbage!" * 20)
    contexts = [(CT_IMAGE, ExplicitVRLittleEndian)]
    with association(env.port, contexts=contexts) as assoc:
        assert assoc.send_c_store(pydicom.dcmread(truncated)).Status == 0xA900
        previous = _config.STORE_SEND_CHUNKED_DATASET
        _config.STORE_SEND_CHUNKED_DATASET = True
        try:
            status = assoc.send_c_store(garbage)
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = previous
        assert status.Status == 0xC210, status
        # The association survives: the rest of the study still goes in.
        assert assoc.send_c_store(pydicom.dcmread(study.files[2])).Status == 0x0000
    registry = env.metrics.registry
    for reason in ("pixel-data-truncated", "undecodable"):
        assert metric(registry, "minivess_instances_rejected_total",
                      interface="dimse", reason=reason) == 1  # fmt: skip
    assert [p.name for p in (env.settings.spool_dir / study.study_instance_uid).iterdir()] == [
        f"{study.sop_instance_uids[2]}.dcm"
    ]


@pytest.mark.parametrize(
    ("flag", "syntax"),
    [
        ("-xi", ImplicitVRLittleEndian),
        ("-xd", DeflatedExplicitVRLittleEndian),
        ("-xr", RLELossless),
    ],
)
@pytest.mark.requirement("SRS-040")
def test_transfer_syntaxes_are_negotiated_and_kept(
    start_gateway: StartGateway, study: Any, tmp_path: Path, flag: str, syntax: str
) -> None:
    """storescu proposes its syntaxes; the one it sends in is what the spool keeps."""
    env = start_gateway()
    sent = pydicom.dcmread(study.files[3])
    path = study.files[3]
    if syntax == RLELossless:  # storescu sends a file as it is when it can
        sent.compress(RLELossless)
        path = tmp_path / "rle.dcm"
        sent.save_as(path, enforce_file_format=True)
    exe = require_executable("storescu")
    done = _dcmtk([exe, flag, "-aec", "MINIVESS", "127.0.0.1", str(env.port), str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
    kept = pydicom.dcmread(env.spool.path_of(study.study_instance_uid, str(sent.SOPInstanceUID)))
    assert kept.file_meta.TransferSyntaxUID == syntax
    assert (kept.pixel_array == pydicom.dcmread(study.files[3]).pixel_array).all()


@pytest.mark.requirement("SRS-043")
def test_new_studies_wait_when_too_many_are_pending(
    start_gateway: StartGateway, study: Any, tmp_path: Path
) -> None:
    env = start_gateway(max_pending_jobs=1)
    other = make_study(tmp_path / "other", seed=24)
    contexts = [(CT_IMAGE, ExplicitVRLittleEndian)]
    with association(env.port, contexts=contexts) as assoc:
        assert assoc.send_c_store(pydicom.dcmread(study.files[0])).Status == 0x0000
        refused = assoc.send_c_store(pydicom.dcmread(other.files[0]))
        assert refused.Status == 0xA702 and "pending" in refused.ErrorComment
        # The study already being received is never cut short.
        assert assoc.send_c_store(pydicom.dcmread(study.files[1])).Status == 0x0000
    assert [job.instances for job in env.journal.list_jobs()] == [2]
