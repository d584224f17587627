"""Every refusal is counted once, with its reason, by ``record_refusal``: C-STORE checks,
the gateway's command set, HTTP uploads (files, zips) and STOW-RS parts. No peers: the
HTTP app runs in-process on a service that is not started (no pipeline needed)."""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from starlette.testclient import TestClient

from service.app import Service
from service.http.server import api_app
from service.storage_status import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    OUT_OF_RESOURCES,
    Reason,
    record_refusal,
    refusal,
)
from tests.service_support import CT_IMAGE, StubRunner, metric, settings_for

LIMIT = 4096  # max_instance_bytes: a test instance is ~400 bytes
PATIENT_FILE = "DOE^JANE_1970.dcm"  # a client's file name may name the patient


def instance(study: str | None = None) -> bytes:
    """A minimal valid CT image (2x2, 16 bit) as Part 10 bytes."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = b"\0\1" * 4
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    settings = settings_for(tmp_path / "var", dev_mode=True, max_instance_bytes=LIMIT)
    appliance = Service(settings, pipeline=StubRunner())
    yield appliance
    appliance.journal.close()


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(api_app(service)) as http:
        yield http


def refused(service: Service, interface: str, reason: str) -> float:
    return metric(service.metrics.registry, "minivess_instances_rejected_total",
                  interface=interface, reason=reason)  # fmt: skip


def test_each_reason_has_one_status() -> None:
    assert Reason.TOO_LARGE.status == OUT_OF_RESOURCES
    assert Reason.STUDY_MISMATCH.status == DATASET_MISMATCH
    assert Reason.BAD_ZIP.status == Reason.MALFORMED_BODY.status == CANNOT_UNDERSTAND
    assert refusal(Reason.BAD_ZIP, "x" * 100).comment == "x" * 64  # an Error Comment's 64


def test_record_refusal_counts_and_logs_the_reason(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.storage_status"):
        record_refusal(service.metrics, "http", refusal(Reason.BAD_ZIP, "Not a zip"), "1.2.3")
    assert refused(service, "http", "bad-zip") == 1
    assert "refused instance 1.2.3 (http): 0xC210 bad-zip: Not a zip" in caplog.text


def test_a_c_store_refusal_is_counted(service: Service) -> None:
    result = service.ingest.accept(b"\0" * 128 + b"DICM" + b"junk", interface="dimse")
    assert (result.status, result.reason) == (CANNOT_UNDERSTAND, "undecodable")
    assert refused(service, "dimse", "undecodable") == 1
    big = service.ingest.accept(b"\0" * (LIMIT + 1), interface="dimse")
    assert big.reason == "too-large" and refused(service, "dimse", "too-large") == 1


def test_a_duplicate_is_counted_in_the_metrics_class(service: Service) -> None:
    data = instance()
    assert service.ingest.accept(data, interface="dimse").reason == "stored"
    assert service.ingest.accept(data, interface="dimse").reason == "duplicate"
    assert metric(service.metrics.registry, "minivess_instances_duplicate_total",
                  interface="dimse") == 1  # fmt: skip


def test_a_command_set_the_gateway_cannot_encode_is_counted(service: Service) -> None:
    event: Any = SimpleNamespace(
        request=SimpleNamespace(AffectedSOPClassUID=CT_IMAGE, AffectedSOPInstanceUID="1.2.\xe9"),
        context=SimpleNamespace(transfer_syntax=ExplicitVRLittleEndian),
        assoc=SimpleNamespace(requestor=SimpleNamespace(ae_title="SENDER")),
    )
    status = service.gateway._on_store(event)
    assert isinstance(status, Dataset) and status.Status == DATASET_MISMATCH
    assert refused(service, "dimse", "invalid-uid") == 1


def test_an_upload_too_large_is_counted_without_its_file_name(
    service: Service, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        response = client.post("/v1/studies", files={"f": (PATIENT_FILE, b"\0" * (LIMIT + 1))})
    assert response.status_code == 422
    assert response.json()["instances"][0]["reason"] == "too-large"
    assert refused(service, "http", "too-large") == 1
    assert "refused instance" in caplog.text and "DOE" not in caplog.text


def zipped(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_zip_refusals_are_counted(service: Service, client: TestClient) -> None:
    broken = client.post("/v1/studies", content=b"PK\x03\x04 not a zip",
                         headers={"Content-Type": "application/zip"})  # fmt: skip
    assert broken.status_code == 422 and refused(service, "http", "bad-zip") == 1
    archive = zipped({"big.dcm": b"\0" * (LIMIT + 1), "bad.dcm": instance(), "ok.dcm": instance()})
    corrupt = bytearray(archive)
    header = corrupt.index(b"bad.dcm") + len("bad.dcm")  # its local header's name, then data
    corrupt[header + 10 : header + 20] = b"\xff" * 10  # the deflate stream broken
    response = client.post("/v1/studies", files={"f": ("study.zip", bytes(corrupt))})
    assert response.status_code == 202, response.text
    reasons = {o["file"]: o["reason"] for o in response.json()["instances"]}
    assert reasons == {"study.zip/big.dcm": "too-large", "study.zip/bad.dcm": "bad-zip-member",
                       "study.zip/ok.dcm": "stored"}  # fmt: skip
    assert refused(service, "http", "too-large") == 1
    assert refused(service, "http", "bad-zip-member") == 1


def related(parts: list[tuple[str, bytes]], boundary: str = "b0undary") -> bytes:
    body = b"".join(
        f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
        for kind, data in parts
    )
    return body + f"--{boundary}--\r\n".encode()


STOW_HEADERS = {"Content-Type": 'multipart/related; type="application/dicom"; boundary=b0undary'}


def test_stow_refusals_are_counted(service: Service, client: TestClient) -> None:
    target = generate_uid()
    body = related([
        ("application/dicom", instance(target)),
        ("application/dicom", b"\0" * (LIMIT + 1)),
        ("application/dicom+json", b"{}"),
        ("application/dicom", instance()),  # another study
    ])  # fmt: skip
    response = client.post(f"/dicomweb/studies/{target}", content=body, headers=STOW_HEADERS)
    assert response.status_code == 202, response.text
    for reason in ("too-large", "unsupported-part-type", "study-mismatch"):
        assert refused(service, "http", reason) == 1, reason
    # One whole part, then a second one cut short: the body ends before its closing boundary.
    cut = related([("application/dicom", instance())])[: -len("--b0undary--\r\n")]
    cut += b"--b0undary\r\nContent-Type: application/dicom\r\n\r\nxx"
    response = client.post("/dicomweb/studies", content=cut, headers=STOW_HEADERS)
    assert response.status_code == 202, response.text
    assert refused(service, "http", "malformed-body") == 1
