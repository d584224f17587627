"""The whole service against real peers: dcmtk and Orthanc send, Orthanc receives results.

One Orthanc (the "PACS", which also knows the service as modality ``minivess``) and one
in-process service serve most tests of this module; each test uses its own study, and
counts only that study's instances. The restart test runs the service as a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from map_app.pipeline import Pipeline
from service.__main__ import main as service_main
from service.app import Service
from service.journal import Journal
from service.settings import ServiceSettings
from tests.peers import (
    PEER_ENV,
    Orthanc,
    assert_dicom_valid,
    free_port,
    require_executable,
    run_orthanc,
    storescu,
)
from tests.service_support import (  # pipeline_fixture: the module's pipeline fixture
    ROOT,
    association,
    jobs_of,
    make_study,
    metric,
    orthanc_file,
    orthanc_sop_uids,
    orthanc_upload,
    pipeline_fixture,  # noqa: F401
    result_uids,
    settings_for,
    truncated_copy,
    wait_finished,
    wait_for,
)

pytestmark = [pytest.mark.peer, pytest.mark.slow]


@pytest.fixture(scope="module")
def service_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory, service_port: int) -> Iterator[Orthanc]:
    modality = {"minivess": {"AET": "MINIVESS", "Host": "127.0.0.1", "Port": service_port}}
    with run_orthanc(
        tmp_path_factory.mktemp("pacs"), aet="PACS", extra_config={"DicomModalities": modality}
    ) as server:
        yield server


def destination(orthanc: Orthanc, port: int | None = None) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port or orthanc.dicom_port, "ae_title": orthanc.aet}


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, pipeline: Pipeline, pacs: Orthanc, service_port: int
) -> Iterator[Service]:
    settings = settings_for(
        tmp_path_factory.mktemp("service") / "var",
        dicom_port=service_port,
        export_destinations=[destination(pacs)],
    )
    with Service(settings, pipeline=pipeline) as running:
        yield running


def assert_results_in_pacs(pacs: Orthanc, job: Any, sources: int, tmp_path: Path) -> None:
    """The job's SEG, map and SR are in the study at the PACS, once each, dciodvfy-clean."""
    expected = result_uids(job)
    assert sorted(expected.values()) == ["seg", "sr", "uncertainty_map"]
    held = orthanc_sop_uids(pacs, job.study_uid)
    assert len(held) == len(set(held)) == sources + 3
    assert set(expected) <= set(held)
    for instance in pacs.instances_of_study(job.study_uid):
        uid = instance["MainDicomTags"]["SOPInstanceUID"]
        if uid in expected:
            path = tmp_path / f"{expected[uid]}.dcm"
            path.write_bytes(orthanc_file(pacs, instance["ID"]))
            assert str(pydicom.dcmread(path).StudyInstanceUID) == job.study_uid
            assert_dicom_valid(path)


@pytest.mark.requirement("SRS-040", "SRS-044", "SRS-048", "SRS-049", "SRS-050", "SRS-076")
def test_storescu_study_comes_back_as_results(
    service: Service, pacs: Orthanc, tmp_path: Path
) -> None:
    study = make_study(tmp_path / "study", seed=31)
    storescu("127.0.0.1", service.gateway.port, "MINIVESS", study.files)
    orthanc_upload(pacs, list(study.files))  # the PACS holds the source study, as in real life
    job = wait_finished(service.journal, study.study_instance_uid)
    assert job.state == "done", job.error
    assert job.instances == len(study.files) and job.attempts == 1
    assert_results_in_pacs(pacs, job, len(study.files), tmp_path)
    report = json.loads((Path(job.output_dir or "") / "report.json").read_text())
    assert report["correlation_id"] == job.correlation_id
    spooled = service.settings.spool_dir / job.study_uid  # released right after "done"
    wait_for(lambda: not spooled.exists(), 10, "the spool to be released")
    registry = service.metrics.registry
    assert metric(registry, "minivess_studies_total", outcome="done") >= 1
    assert metric(registry, "minivess_study_latency_seconds_count") >= 1
    for stage, member in [("receive", ""), ("inference", "unet-a"), ("write", ""), ("export", "")]:
        assert metric(registry, "minivess_stage_duration_seconds_count", stage=stage,
                      member=member) >= 1, stage  # fmt: skip
    assert_recorded(service, job, study)


def assert_recorded(service: Service, job: Any, study: Any) -> None:
    """Trace (trace id = correlation id), drift features and audit trail, none with PHI."""
    from compliance.audit import verify_chain

    settings = service.settings
    spans = [json.loads(line) for path in settings.traces_dir.glob("*.jsonl")
             for line in path.read_text().splitlines()]  # fmt: skip
    mine = [span for span in spans if span["context"]["trace_id"].endswith(job.correlation_id)]
    assert {"inference", "uncertainty"} <= {span["name"] for span in mine}
    rows = [json.loads(line) for line in settings.drift_store.read_text().splitlines()]
    assert any(row["correlation_id"] == job.correlation_id for row in rows)
    wait_for(lambda: settings.audit_log_path.is_file() and "study.exported" in
             settings.audit_log_path.read_text(), 10, "the export audit entry")  # fmt: skip
    audit = settings.audit_log_path.read_text()
    events = [json.loads(line)["event_type"] for line in audit.splitlines()]
    assert {"study.received", "inference", "study.exported"} <= set(events)
    assert verify_chain(settings.audit_log_path).ok
    dataset = pydicom.dcmread(study.files[0], stop_before_pixels=True)
    for text in (audit, settings.drift_store.read_text(), json.dumps(spans)):
        assert str(dataset.PatientID) not in text and str(dataset.PatientName) not in text
        assert job.study_uid not in text


@pytest.mark.requirement("SRS-040", "SRS-044")
def test_orthanc_pushes_a_study_and_gets_results(
    service: Service, pacs: Orthanc, tmp_path: Path
) -> None:
    study = make_study(tmp_path / "study", seed=32)
    orthanc_upload(pacs, list(study.files))
    study_id = pacs.study_id(study.study_instance_uid)
    pacs.request("POST", "/modalities/minivess/store",
                 {"Resources": [study_id], "Synchronous": True})  # fmt: skip
    job = wait_finished(service.journal, study.study_instance_uid)
    assert job.state == "done", job.error
    assert_results_in_pacs(pacs, job, len(study.files), tmp_path)


@pytest.mark.requirement("SRS-042")
def test_eight_concurrent_associations(service: Service, pacs: Orthanc, tmp_path: Path) -> None:
    studies = [make_study(tmp_path / f"s{i}", seed=40 + i) for i in range(8)]
    exe = require_executable("storescu")
    port = str(service.gateway.port)
    commands = [
        [exe, "-aet", f"SENDER{i}", "-aec", "MINIVESS", "127.0.0.1", port, *map(str, s.files)]
        for i, s in enumerate(studies)
    ]
    senders = [
        subprocess.Popen(
            c, env=PEER_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for c in commands
    ]
    for sender in senders:
        output, _ = sender.communicate(timeout=120)
        assert sender.returncode == 0, output
    for study in studies:
        job = wait_finished(service.journal, study.study_instance_uid, timeout=120)
        assert job.state == "done", job.error
        assert len(jobs_of(service.journal, study.study_instance_uid)) == 1
        assert job.instances == len(study.files)  # none lost
        held = orthanc_sop_uids(pacs, study.study_instance_uid)
        assert sorted(held) == sorted(result_uids(job))  # results only, once each


@pytest.mark.requirement("SRS-042")
def test_corrupt_instance_is_refused_and_the_rest_processed(
    service: Service, pacs: Orthanc, tmp_path: Path
) -> None:
    study = make_study(tmp_path / "study", seed=33)
    bad = tmp_path / "bad.dcm"
    truncated_copy(study.files[0], bad)
    registry = service.metrics.registry
    labels = {"interface": "dimse", "reason": "pixel-data-truncated"}
    before = metric(registry, "minivess_instances_rejected_total", **labels)
    exe = require_executable("storescu")
    files = [*map(str, study.files)]
    files.insert(len(files) // 2, str(bad))  # -nh: storescu carries on after the failure
    done = subprocess.run(
        [exe, "-v", "-nh", "-aec", "MINIVESS", "127.0.0.1", str(service.gateway.port), *files],
        env=PEER_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert "Received Store Response (Error: DataSetDoesNotMatchSOPClass)" in output, output
    assert output.count("Received Store Response (Success)") == len(study.files), output
    assert metric(registry, "minivess_instances_rejected_total", **labels) == before + 1
    job = wait_finished(service.journal, study.study_instance_uid)
    assert job.state == "done", job.error
    assert job.instances == len(study.files)
    assert sorted(orthanc_sop_uids(pacs, study.study_instance_uid)) == sorted(result_uids(job))


@pytest.mark.requirement("SRS-043", "SRS-044")
def test_restart_while_exporting_delivers_once(
    pipeline: Pipeline, pacs: Orthanc, tmp_path: Path
) -> None:
    study = make_study(tmp_path / "study", seed=34)
    var = tmp_path / "var"
    down = destination(pacs, port=free_port())  # nothing listens there
    first = Service(settings_for(var, export_destinations=[down], export_retries=50),
                    pipeline=pipeline)  # fmt: skip
    with first:
        storescu("127.0.0.1", first.gateway.port, "MINIVESS", study.files)
        wait_for(lambda: any(j.export_attempts for j in jobs_of(first.journal,
                 study.study_instance_uid)), 60, "a failed export attempt")  # fmt: skip
    (job,) = jobs_of(Journal(var / "journal.sqlite3"), study.study_instance_uid)
    assert job.state == "exporting"
    second = Service(settings_for(var, export_destinations=[destination(pacs)]),
                     pipeline=pipeline)  # fmt: skip
    with second:
        job = wait_finished(second.journal, study.study_instance_uid)
    assert job.state == "done" and job.attempts == 1  # resumed the export, no re-run
    assert sorted(orthanc_sop_uids(pacs, study.study_instance_uid)) == sorted(result_uids(job))


@pytest.mark.requirement("SRS-044")
def test_dead_letter_then_retry_export(pipeline: Pipeline, tmp_path: Path) -> None:
    study = make_study(tmp_path / "study", seed=35)
    pacs_port = free_port()
    settings = settings_for(
        tmp_path / "var",
        export_destinations=[{"host": "127.0.0.1", "port": pacs_port, "ae_title": "LATEPACS"}],
        export_retries=2,
    )
    with Service(settings, pipeline=pipeline) as service:
        storescu("127.0.0.1", service.gateway.port, "MINIVESS", study.files)
        job = wait_finished(service.journal, study.study_instance_uid)
        assert (job.state, job.export_attempts, job.error_reason) == (
            "dead_letter", 2, "export-failed"
        )  # fmt: skip
        registry = service.metrics.registry
        assert metric(registry, "minivess_exports_total", outcome="retried") == 2
        assert metric(registry, "minivess_exports_total", outcome="dead_lettered") == 1
        with run_orthanc(tmp_path / "late", aet="LATEPACS",
                         extra_config={"DicomPort": pacs_port}) as late:  # fmt: skip
            config = tmp_path / "service.json"
            config.write_text(settings.model_dump_json())
            assert service_main(["--config", str(config), "retry-export", job.job_id]) == 0
            job = wait_for(lambda: (j := service.journal.get(job.job_id)) and
                           j.state == "done" and j, 30, "the re-triggered export")  # fmt: skip
            assert sorted(orthanc_sop_uids(late, study.study_instance_uid)) == sorted(
                result_uids(job)
            )
        assert metric(registry, "minivess_exports_total", outcome="ok") == 1


def _start_subprocess(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service", "--config", str(config), "serve"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _wait_echo(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    def answers() -> bool:
        assert process.poll() is None, log.read_text()
        with association(port) as assoc:
            return bool(assoc.is_established and assoc.send_c_echo().Status == 0)

    wait_for(answers, 90, "the service subprocess to answer C-ECHO")


@pytest.mark.requirement("SRS-043")
def test_crash_after_receipt_resumes_once(pacs: Orthanc, tmp_path: Path) -> None:
    study = make_study(tmp_path / "study", seed=36)
    port = free_port()
    settings: ServiceSettings = settings_for(
        tmp_path / "var", dicom_port=port, quiet_period_s=3.0,
        export_destinations=[destination(pacs)],
    )  # fmt: skip
    config = tmp_path / "service.json"
    config.write_text(settings.model_dump_json())
    log = tmp_path / "service.log"
    first = _start_subprocess(config, log)
    try:
        _wait_echo(port, first, log)
        storescu("127.0.0.1", port, "MINIVESS", study.files)
    finally:
        first.send_signal(signal.SIGKILL)  # a crash, inside the quiet period
        first.wait(30)
    journal = Journal(settings.journal_path)
    (job,) = jobs_of(journal, study.study_instance_uid)
    assert job.state == "received" and job.instances == len(study.files)
    assert orthanc_sop_uids(pacs, study.study_instance_uid) == []
    second = _start_subprocess(config, log)
    try:
        job = wait_finished(journal, study.study_instance_uid, timeout=120)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, log.read_text()[-3000:]
    assert job.state == "done", job.error
    assert len(jobs_of(journal, study.study_instance_uid)) == 1 and job.attempts == 1
    assert sorted(orthanc_sop_uids(pacs, study.study_instance_uid)) == sorted(result_uids(job))


@pytest.mark.requirement("SRS-043")
def test_pipeline_failure_is_recorded(service: Service, pacs: Orthanc, tmp_path: Path) -> None:
    """A study the pipeline cannot use (one slice) fails with its reason; nothing exported."""
    study = make_study(tmp_path / "study", seed=37)
    storescu("127.0.0.1", service.gateway.port, "MINIVESS", study.files[:1])
    job = wait_finished(service.journal, study.study_instance_uid)
    assert job.state == "failed" and job.error_reason in ("bad-geometry", "no-qualifying-series")
    assert job.error and job.outputs == []
    report = json.loads((Path(job.output_dir or "") / "report.json").read_text())
    assert report["status"] == "failed" and report["error"] == job.error
    assert metric(service.metrics.registry, "minivess_studies_total", outcome="failed") >= 1
    spooled = service.settings.spool_dir / job.study_uid
    wait_for(lambda: not spooled.exists(), 10, "the spool to be released")
    assert orthanc_sop_uids(pacs, study.study_instance_uid) == []
