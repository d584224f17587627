"""FHIR result notification: the Bundle, its delivery with the export's retries, end to end.

No FHIR server can run on this machine (HAPI FHIR comes from Maven Central, which this
machine cannot reach), so the exchange is tested against a recording HTTP endpoint on
127.0.0.1 (tests/notify_support.py) and what it received is validated with
``fhir.resources``' own R4B models.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

from map_app.pipeline import Pipeline
from service.app import Service
from service.export import Exporter
from service.journal import Journal
from service.notify.fhir import CODE_SYSTEM, DICOM_UID
from service.observability.metrics import ApplianceMetrics
from service.settings import ServiceSettings, load_settings
from service.spool import Spool
from tests.notify_support import (  # the fixtures of the notification tests
    exporting_job,
    fhir_endpoint,
    journal_fixture,  # noqa: F401
    mllp_listener,
    result_file_fixture,  # noqa: F401
)
from tests.peers import run_orthanc, storescu
from tests.service_support import (  # pipeline_fixture: the module's pipeline fixture
    make_study,
    pipeline_fixture,  # noqa: F401
    settings_for,
    wait_finished,
)

STUDY = "1.2.826.0.1.3680043.8.498.77"


def exporter_for(settings: ServiceSettings, journal: Journal) -> Exporter:
    return Exporter(settings, journal, Spool(settings.spool_dir), ApplianceMetrics())


def resources(body: bytes) -> tuple[DiagnosticReport, list[Observation], Bundle]:
    """The received Bundle, validated by fhir.resources, and its report and observations."""
    bundle = Bundle.model_validate_json(body)
    assert bundle.type == "transaction"
    entries = bundle.entry or []
    kinds = [entry.resource.get_resource_type() for entry in entries]
    assert kinds == ["Observation"] * 6 + ["DiagnosticReport"]
    report = DiagnosticReport.model_validate(entries[-1].resource.model_dump())
    observations = [Observation.model_validate(e.resource.model_dump()) for e in entries[:-1]]
    return report, observations, bundle


@pytest.mark.requirement("SRS-044", "SRS-087")
def test_bundle_names_the_study_and_carries_the_values(
    tmp_path: Path, journal: Journal, result_file: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "MINIVESS_FHIR_AUTH_TOKEN").write_text("s3cret-token")
    with fhir_endpoint([200]) as fhir:
        # The token as a site gives it: a secret file (a mounted Kubernetes Secret).
        settings = load_settings(environ={"MINIVESS_SECRETS_DIR": str(secrets)},
                                 var_dir=tmp_path / "var", fhir_base_url=fhir.url)  # fmt: skip
        job = exporting_job(journal, tmp_path / "out", result_file, STUDY)
        done = exporter_for(settings, journal).export(job)
    assert done.state == "done" and done.delivered == [f"fhir:{fhir.url}"]
    (received,) = fhir.received
    assert received.path == "/fhir"
    assert received.headers["Content-Type"] == "application/fhir+json"
    assert received.headers["Authorization"] == "Bearer s3cret-token"
    report, observations, bundle = resources(received.body)
    study_ref = {"type": "ImagingStudy",
                 "identifier": {"system": DICOM_UID, "value": f"urn:oid:{STUDY}"}}  # fmt: skip
    assert [r.model_dump(exclude_none=True) for r in report.imagingStudy or []] == [study_ref]
    # The report's results are exactly the Bundle's observations (urn:uuid fullUrls).
    urls = [entry.fullUrl for entry in bundle.entry or []]
    assert [r.reference for r in report.result or []] == urls[:-1]
    source = pydicom.dcmread(result_file, stop_before_pixels=True)
    assert report.subject is not None and report.subject.identifier is not None
    assert report.subject.identifier.value == source.PatientID
    if source.get("AccessionNumber"):
        assert report.basedOn is not None
        assert report.basedOn[0].identifier.value == source.AccessionNumber
    values = [
        (o.code.coding[0].code, float(o.valueQuantity.value) if o.valueQuantity else o.valueBoolean)
        for o in observations
    ]
    assert values == [("118565006", 12.5), ("DISAGREE", 0.05), ("REVIEW", False),
                      ("118565006", 3.25), ("DISAGREE", 0.4), ("REVIEW", True)]  # fmt: skip
    assert observations[1].code.coding[0].system == CODE_SYSTEM
    assert all(o.derivedFrom[0].identifier.value == f"urn:oid:{STUDY}" for o in observations)
    assert "Marked for human review" in (report.conclusion or "")
    # Conditional updates: a re-send replaces instead of adding a second report.
    requests = [(e.request.method, e.request.url) for e in bundle.entry or []]
    assert all(method == "PUT" and "?identifier=" in url for method, url in requests)


@pytest.mark.requirement("SRS-044", "SRS-087")
def test_a_failing_endpoint_is_retried_on_the_export_schedule(
    tmp_path: Path, journal: Journal, result_file: Path
) -> None:
    with fhir_endpoint([503, 200]) as fhir:
        settings = settings_for(tmp_path / "var", fhir_base_url=fhir.url, export_retries=3)
        exporter = exporter_for(settings, journal)
        job = exporting_job(journal, tmp_path / "out", result_file, STUDY)
        first = exporter.export(job)
        assert (first.state, first.export_attempts, first.error_reason) == (
            "exporting", 1, "export-retrying"
        )  # fmt: skip
        assert "HTTP 503" in (first.error or "")
        assert first.next_export_at is not None  # scheduled in the journal, not slept on
        second = exporter.export(first)
    assert second.state == "done"
    assert len(fhir.received) == 2
    assert fhir.received[0].body == fhir.received[1].body  # the same, idempotent message
    registry = exporter.metrics.registry
    assert registry.get_sample_value("minivess_exports_total", {"outcome": "retried"}) == 1
    counted = {outcome: registry.get_sample_value("minivess_notifications_total",
                                                  {"channel": "fhir", "outcome": outcome})
               for outcome in ("sent", "retried", "dead_lettered")}  # fmt: skip
    assert counted == {"sent": 1, "retried": 1, "dead_lettered": 0}


@pytest.mark.requirement("SRS-044", "SRS-087")
def test_dead_letter_after_the_retries_then_retry_export_delivers(
    tmp_path: Path, journal: Journal, result_file: Path
) -> None:
    with fhir_endpoint([500, 500, 200]) as fhir:
        settings = settings_for(tmp_path / "var", fhir_base_url=fhir.url, export_retries=1)
        exporter = exporter_for(settings, journal)
        job = exporting_job(journal, tmp_path / "out", result_file, STUDY)
        job = exporter.export(exporter.export(job))
        assert (job.state, job.error_reason) == ("dead_letter", "export-failed")
        dead = {"channel": "fhir", "outcome": "dead_lettered"}
        assert exporter.metrics.registry.get_sample_value("minivess_notifications_total", dead)
        assert "HTTP 500" in (job.error or "")
        # Nothing lost: results and report stay; `retry-export` sends them again.
        assert Path(job.outputs[0]).is_file()
        assert (tmp_path / "out" / "report.json").is_file()
        job = exporter.export(journal.retry_export(job.job_id))
    assert job.state == "done" and len(fhir.received) == 3


@pytest.mark.requirement("SRS-044", "SRS-087")
def test_the_record_system_hears_only_of_results_the_pacs_has(
    tmp_path: Path, journal: Journal, result_file: Path
) -> None:
    from tests.peers import free_port

    nowhere = {"host": "127.0.0.1", "port": free_port(), "ae_title": "AWAY"}
    with fhir_endpoint([200]) as fhir:
        settings = settings_for(tmp_path / "var", fhir_base_url=fhir.url,
                                export_destinations=[nowhere], export_timeout_s=2)  # fmt: skip
        job = exporting_job(journal, tmp_path / "out", result_file, STUDY)
        job = exporter_for(settings, journal).export(job)
    assert job.state == "exporting" and "AWAY@" in (job.error or "")
    assert fhir.received == []


@pytest.mark.peer
@pytest.mark.slow
@pytest.mark.requirement("SRS-044", "SRS-087")
def test_a_pushed_study_is_reported_to_fhir_and_hl7(pipeline: Pipeline, tmp_path: Path) -> None:
    """storescu -> service -> Orthanc gets the DICOM results, then the FHIR endpoint and
    the MLLP listener get the values of the run's report.json."""
    study = make_study(tmp_path / "study", seed=42)
    with (
        run_orthanc(tmp_path / "pacs", aet="PACS") as pacs,
        fhir_endpoint([200]) as fhir,
        mllp_listener(["AA"]) as ris,
    ):
        settings = settings_for(
            tmp_path / "var", fhir_base_url=fhir.url, hl7_host="127.0.0.1", hl7_port=ris.port,
            export_destinations=[{"host": "127.0.0.1", "port": pacs.dicom_port,
                                  "ae_title": "PACS"}],
        )  # fmt: skip
        with Service(settings, pipeline=pipeline) as service:
            storescu("127.0.0.1", service.gateway.port, "MINIVESS", study.files)
            job = wait_finished(service.journal, study.study_instance_uid, timeout=120)
        assert job.state == "done", job.error
        assert pacs.study_id(study.study_instance_uid) is not None
    run = json.loads((Path(job.output_dir or "") / "report.json").read_text())
    (series,) = [s for s in run["series"] if s["status"] == "done"]
    (received,) = fhir.received
    _, observations, _ = resources_of_one_series(received.body)
    assert float(observations[0].valueQuantity.value) == pytest.approx(series["vessel_volume_ml"])
    assert float(observations[1].valueQuantity.value) == pytest.approx(series["uncertainty_score"])
    assert observations[2].valueBoolean is bool(series["out_of_distribution"])
    assert job.delivered == [f"PACS@127.0.0.1:{pacs.dicom_port}", f"fhir:{fhir.url}",
                             f"hl7:127.0.0.1:{ris.port}"]  # fmt: skip
    from hl7apy.parser import parse_message

    (message,) = ris.messages
    oru = parse_message(message, find_groups=True)
    obx = oru.ORU_R01_PATIENT_RESULT.ORU_R01_ORDER_OBSERVATION.ORU_R01_OBSERVATION[0].obx
    assert float(obx.obx_5.value) == pytest.approx(series["vessel_volume_ml"], abs=1e-4)


def resources_of_one_series(body: bytes) -> tuple[DiagnosticReport, list[Observation], Bundle]:
    bundle = Bundle.model_validate_json(body)
    entries = bundle.entry or []
    report = DiagnosticReport.model_validate(entries[-1].resource.model_dump())
    observations = [Observation.model_validate(e.resource.model_dump()) for e in entries[:-1]]
    assert len(observations) == 3
    return report, observations, bundle
