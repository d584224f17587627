"""Faults: kill -9 at random points, a full spool disk, the destination PACS away a while.

The kill trials are the CI share (one per phase) of ``python -m benchmarks.soak kill``
(20+). The disk tests mount a small tmpfs as the spool (root is needed for ``mount``; a
machine without it fails these tests rather than skipping them).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from benchmarks.soak import kill_trials
from map_app.pipeline import Pipeline
from service.app import Service
from service.gateway import Gateway
from service.ingest import InstanceIngest
from service.journal import Journal
from service.observability.metrics import ApplianceMetrics
from service.spool import Spool
from tests.peers import free_port, run_orthanc, storescu
from tests.service_support import (  # pipeline_fixture: the module's pipeline fixture
    CT_IMAGE,
    association,
    make_study,
    metric,
    orthanc_sop_uids,
    pipeline_fixture,  # noqa: F401
    result_uids,
    settings_for,
    wait_finished,
    wait_for,
)

pytestmark = [pytest.mark.peer, pytest.mark.slow]


@pytest.mark.requirement("SRS-073")
def test_kill_9_during_receive_processing_and_export(tmp_path: Path) -> None:
    with run_orthanc(tmp_path / "pacs", aet="PACS") as pacs:
        figures = kill_trials(tmp_path / "soak", pacs, trials=3, seed=7, say=lambda _: None)
    assert figures["problems"] == []
    assert figures["kills_by_target"] == {"receive": 1, "processing": 1, "export": 1}
    assert figures["studies_done_once"] == figures["studies"] == 3


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (root needed): {done.stderr.strip()}", pytrace=False)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """A filler file that leaves about ``leave`` bytes free on the file system."""
    filler = folder / "filler.bin"
    free = shutil.disk_usage(folder).free
    with open(filler, "wb") as handle:
        handle.truncate(0)
        handle.write(b"\0" * max(0, free - leave))
    return filler


def _intact(spool: Spool, study: object, sources: list[Path]) -> None:
    """Every spooled instance decodes to the pixels that were sent (nothing corrupted)."""
    by_uid = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in sources}
    folder = spool.study_dir(str(study))
    for path in folder.glob("*.dcm"):
        kept = pydicom.dcmread(path)
        sent = pydicom.dcmread(by_uid[str(kept.SOPInstanceUID)])
        assert np.array_equal(kept.pixel_array, sent.pixel_array), path.name


@pytest.mark.requirement("SRS-042", "SRS-073")
def test_full_spool_answers_out_of_resources_and_recovers(
    tmp_path: Path, pipeline: Pipeline
) -> None:
    study = make_study(tmp_path / "study", seed=61)
    var = tmp_path / "var"
    with tmpfs(var / "spool", "512k") as spool_dir:
        settings = settings_for(var, min_free_disk_bytes=64 * 1024)
        with Service(settings, pipeline=pipeline) as service:
            filler = _fill(spool_dir, leave=64 * 1024 + 3 * 8192)
            statuses = []
            with association(service.gateway.port,
                             contexts=[(CT_IMAGE, ExplicitVRLittleEndian)]) as assoc:  # fmt: skip
                for path in study.files:
                    status = assoc.send_c_store(pydicom.dcmread(path))
                    statuses.append(int(status.Status))
                    assert status.Status in (0x0000, 0xA700), status
            accepted = statuses.count(0)
            assert 0 < accepted < len(study.files) and statuses[accepted:] == [0xA700] * (
                len(study.files) - accepted
            )  # fmt: skip
            _intact(service.spool, study.study_instance_uid, list(study.files))
            assert not list((spool_dir / ".tmp").iterdir())
            filler.unlink()  # the disk frees: the sender's retry goes through
            storescu("127.0.0.1", service.gateway.port, "MINIVESS", study.files)
            job = wait_finished(service.journal, study.study_instance_uid, timeout=120)
            assert job.state == "done" and job.instances == len(study.files), job.error
            rejected = metric(service.metrics.registry, "minivess_instances_rejected_total",
                              interface="dimse", reason="disk-full")  # fmt: skip
            assert rejected == len(study.files) - accepted


def _use_up_inodes(folder: Path, leave: int) -> list[Path]:
    """Files that take every free inode of the file system but ``leave``."""
    fillers = []
    try:
        while True:
            fillers.append(folder / f"inode-{len(fillers)}")
            fillers[-1].touch()
    except OSError:  # ENOSPC: no inode left
        fillers.pop()
    for path in fillers[-leave:]:
        path.unlink()
    return fillers[:-leave]


@pytest.mark.requirement("SRS-042", "SRS-073")
def test_disk_full_at_write_answers_write_failed(tmp_path: Path) -> None:
    """Plenty of bytes free but no inode left (the check before writing passes, the write
    itself hits ENOSPC): 0xA701, no temporary file left behind, what was accepted before
    stays whole, and storing works again once the file system has room."""
    study = make_study(tmp_path / "study", seed=62)
    var = tmp_path / "var"
    with tmpfs(var / "spool", "4m,nr_inodes=64") as spool_dir:
        settings = settings_for(var, min_free_disk_bytes=0)
        journal, spool = Journal(settings.journal_path), Spool(settings.spool_dir)
        gateway = Gateway(settings, InstanceIngest(settings, spool, journal, ApplianceMetrics()))
        gateway.start()
        try:
            fillers = _use_up_inodes(spool_dir, leave=4)  # the study folder and 3 files
            with association(gateway.port, contexts=[(CT_IMAGE, ExplicitVRLittleEndian)]) as a:
                statuses = [int(a.send_c_store(pydicom.dcmread(p)).Status) for p in study.files]
                assert statuses[:3] == [0, 0, 0] and set(statuses[3:]) == {0xA701}, statuses
                assert not list((spool_dir / ".tmp").iterdir())  # no half-written file
                _intact(spool, study.study_instance_uid, list(study.files))
                for path in fillers:
                    path.unlink()
                for path, status in zip(study.files, statuses, strict=True):
                    if status:
                        assert a.send_c_store(pydicom.dcmread(path)).Status == 0
            (job,) = journal.list_jobs()
            assert job.instances == len(study.files)
            _intact(spool, study.study_instance_uid, list(study.files))
        finally:
            gateway.stop()
            journal.close()


@pytest.mark.requirement("SRS-044", "SRS-073")
def test_pacs_down_then_back_before_dead_letter(tmp_path: Path, pipeline: Pipeline) -> None:
    study = make_study(tmp_path / "study", seed=63)
    port = free_port()  # the PACS will listen here, once it is back
    settings = settings_for(
        tmp_path / "var", export_retries=30, export_backoff_s=0.3, export_max_backoff_s=1.0,
        export_destinations=[{"host": "127.0.0.1", "port": port, "ae_title": "LATEPACS"}],
    )  # fmt: skip
    with Service(settings, pipeline=pipeline) as service:
        storescu("127.0.0.1", service.gateway.port, "MINIVESS", study.files)

        def failed_twice() -> bool:
            jobs = service.journal.list_jobs()
            return bool(jobs) and jobs[0].state == "exporting" and jobs[0].export_attempts >= 2

        wait_for(failed_twice, 120, "two failed export attempts")
        with run_orthanc(tmp_path / "late", aet="LATEPACS",
                         extra_config={"DicomPort": port}) as late:  # fmt: skip
            job = wait_finished(service.journal, study.study_instance_uid, timeout=60)
            held = orthanc_sop_uids(late, study.study_instance_uid)
        assert job.state == "done" and job.export_attempts >= 2, job.error
        assert sorted(held) == sorted(result_uids(job))  # once each
        registry = service.metrics.registry
        assert metric(registry, "minivess_exports_total", outcome="retried") >= 2
        assert metric(registry, "minivess_exports_total", outcome="dead_lettered") == 0
        assert metric(registry, "minivess_exports_total", outcome="ok") == 1
