"""Helpers for the service tests (no tests here): studies, services, waiting, Orthanc I/O."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE

from compliance.audit import AuditLog
from map_app.pipeline import Pipeline
from operators.run_report import ModelSummary, RunReport
from service.gateway import Gateway
from service.ingest import InstanceIngest
from service.journal import TERMINAL, Job, Journal
from service.observability.metrics import ApplianceMetrics
from service.settings import ServiceSettings, load_settings
from service.spool import Spool
from synthetic.case import Modality, generate_case
from synthetic.dicom_series import StudyIdentity, WrittenSeries, write_series
from tests.peers import Orthanc

os.environ.setdefault("HOLOSCAN_LOG_LEVEL", "ERROR")

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models" / "ensemble"
SMALL_FOV = (12.0, 24.0, 24.0)
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
RESULT_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "seg",
    "1.2.840.10008.5.1.4.1.1.30": "uncertainty_map",
    "1.2.840.10008.5.1.4.1.1.88.34": "sr",
}


@pytest.fixture(scope="module", name="pipeline")
def pipeline_fixture() -> Pipeline:
    """The shipped ensemble's pipeline, one per test module that imports this fixture."""
    return Pipeline(MODELS)


class StubRunner:
    """A Runner with no models: it names one and never runs."""

    def __init__(self) -> None:
        self.audit_log: AuditLog | None = None

    def model_summary(self) -> ModelSummary:
        return ModelSummary(name="stub", version="9.9.9", providers=["cpu"], members={"a": "0"})

    def run(
        self, input_path: Path, output_dir: Path, correlation_id: str | None = None
    ) -> RunReport:
        raise AssertionError("not run here")


def make_study(folder: Path, seed: int, key: str = "svc", **quirks: Any) -> WrittenSeries:
    """A small synthetic CT study (one series, ~16 slices of ~55x55) in ``folder``."""
    from synthetic.dicom_series import DicomQuirks

    case = generate_case(seed, Modality.CT, fov_mm=SMALL_FOV)
    identity = StudyIdentity.synthetic(seed, Modality.CT, key)
    return write_series(case, folder, DicomQuirks(**quirks), identity)


def truncated_copy(source: Path, target: Path) -> str:
    """A copy of ``source`` as a new instance whose Pixel Data lost its second half."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(target, enforce_file_format=True)
    return str(ds.SOPInstanceUID)


def settings_for(var_dir: Path, **overrides: Any) -> ServiceSettings:
    """Test settings: loopback, any free port, short quiet period, no disk watermark."""
    values: dict[str, Any] = {
        "var_dir": var_dir,
        "dicom_port": 0,
        "http_port": 0,
        "quiet_period_s": 0.6,
        "min_free_disk_bytes": 0,
        "export_backoff_s": 0.2,
        "export_timeout_s": 10,
        "model_dir": MODELS,
    }
    values.update(overrides)
    return load_settings(environ={}, **values)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def jobs_of(journal: Journal, study_uid: str) -> list[Job]:
    return [job for job in journal.list_jobs() if job.study_uid == study_uid]


def wait_finished(journal: Journal, study_uid: str, timeout: float = 60) -> Job:
    """The study's job once it reached done, failed or dead_letter."""

    def finished() -> Job | None:
        jobs = jobs_of(journal, study_uid)
        return jobs[0] if jobs and jobs[0].state in TERMINAL else None

    job: Job = wait_for(finished, timeout, f"the job of study {study_uid}")
    return job


def orthanc_file(orthanc: Orthanc, instance_id: str) -> bytes:
    with urllib.request.urlopen(f"{orthanc.base_url}/instances/{instance_id}/file") as rsp:
        data: bytes = rsp.read()
    return data


def orthanc_upload(orthanc: Orthanc, files: list[Path]) -> None:
    for path in files:
        request = urllib.request.Request(
            f"{orthanc.base_url}/instances", data=path.read_bytes(), method="POST"
        )
        urllib.request.urlopen(request).read()


def orthanc_sop_uids(orthanc: Orthanc, study_uid: str) -> list[str]:
    """SOP Instance UIDs Orthanc holds in the study (a list: duplicates would show)."""
    if orthanc.study_id(study_uid) is None:
        return []
    return [i["MainDicomTags"]["SOPInstanceUID"] for i in orthanc.instances_of_study(study_uid)]


def result_uids(job: Job) -> dict[str, str]:
    """SOP Instance UID -> kind (seg, uncertainty_map, sr) of a job's output files."""
    found = {}
    for path in job.outputs:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found[str(ds.SOPInstanceUID)] = RESULT_CLASSES[str(ds.SOPClassUID)]
    return found


def metric(registry: Any, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return float(value or 0.0)


@contextmanager
def association(
    port: int, called: str = "MINIVESS", calling: str = "MINIVESS_TEST", contexts: Any = None
) -> Iterator[Any]:
    """A pynetdicom SCU association (the test's own probe for exact statuses/reasons)."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for context in contexts or [("1.2.840.10008.1.1", None)]:
        if context[1] is None:
            ae.add_requested_context(context[0])
        else:
            ae.add_requested_context(*context)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


@dataclass
class GatewayEnv:
    """A started gateway (no pipeline) and the parts it writes to."""

    settings: ServiceSettings
    journal: Journal
    spool: Spool
    metrics: ApplianceMetrics
    gateway: Gateway

    @property
    def port(self) -> int:
        return self.gateway.port

    def stop(self) -> None:
        self.gateway.stop()
        self.journal.close()


StartGateway = Callable[..., GatewayEnv]  # the start_gateway fixture (tests/conftest.py)


def start_test_gateway(var: Path, **overrides: Any) -> GatewayEnv:
    settings = settings_for(var, **overrides)
    journal = Journal(settings.journal_path)
    spool = Spool(settings.spool_dir)
    metrics = ApplianceMetrics()
    gateway = Gateway(settings, InstanceIngest(settings, spool, journal, metrics))
    gateway.start()
    return GatewayEnv(settings, journal, spool, metrics, gateway)
