"""The HTTP sidecar (BentoML) over real HTTP on 127.0.0.1, around an in-process Service.

One Service with the shared pipeline, bearer auth on and the sidecar on a free port
serves the module; a second one (dev mode, a disk watermark no disk meets) checks
readiness failures and the open API; one test runs ``python -m service serve`` itself.
Results are checked by dciodvfy; bodies against the published OpenAPI schemas.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pydicom
import pytest
import requests
from pydicom.dataset import Dataset

from map_app.pipeline import Pipeline
from service.app import Service
from tests.peers import assert_dicom_valid, free_port
from tests.service_support import (  # pipeline_fixture: the module's pipeline fixture
    ROOT,
    make_study,
    metric,
    pipeline_fixture,  # noqa: F401
    settings_for,
    truncated_copy,
    wait_for,
)

pytestmark = [pytest.mark.peer, pytest.mark.slow]

TOKEN = "s3cret-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROBLEM = "application/problem+json"
RELATED = 'multipart/related; type="application/dicom"'
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, pipeline: Pipeline) -> Iterator[Service]:
    settings = settings_for(
        tmp_path_factory.mktemp("http") / "var", http_port=free_port(), api_token=TOKEN
    )
    with Service(settings, pipeline=pipeline, http=True) as running:
        yield running


def url(service: Service, path: str) -> str:
    assert service.http is not None
    return f"http://127.0.0.1:{service.http.port}{path}"


def related(parts: list[bytes], boundary: str = "stow-test-boundary") -> tuple[bytes, str]:
    """A STOW-RS request body (PS3.18 8.6.1.2) and its Content-Type."""
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
        for part in parts
    )
    return body + f"--{boundary}--\r\n".encode(), f"{RELATED}; boundary={boundary}"


def split_related(response: requests.Response) -> list[bytes]:
    boundary = response.headers["content-type"].split("boundary=")[1].strip('"')
    chunks = response.content.split(f"--{boundary}".encode())[1:-1]
    return [chunk.split(b"\r\n\r\n", 1)[1][: -len(b"\r\n")] for chunk in chunks]


def assert_problem(response: requests.Response, status: int, slug: str | None = None) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    assert "Traceback" not in response.text
    if slug is not None:
        assert body["type"] == f"/problems/{slug}"
    return body


def assert_schema(service: Service, body: Any, schema: str) -> None:
    spec = requests.get(url(service, "/openapi.json"), timeout=10).json()
    root = {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]}
    jsonschema.validate(body, root)


def stow_response(response: requests.Response) -> Dataset:
    assert response.headers["content-type"] == "application/dicom+json", response.text
    ds = Dataset.from_json(response.json())
    assert "RetrieveURL" in ds  # Type 2 (PS3.18 Table I.1-1): present, empty here
    return ds


@pytest.mark.requirement("SRS-045", "SRS-040")
def test_upload_study_then_fetch_a_valid_seg(service: Service, tmp_path: Path) -> None:
    study = make_study(tmp_path / "study", seed=61)
    bad = tmp_path / "bad.dcm"
    bad_uid = truncated_copy(study.files[0], bad)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:  # half the study as one zip field
        for path in study.files[::2]:
            archive.write(path, f"series/{path.name}")
        archive.writestr("DICOMDIR", b"skipped")
    files = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in study.files[1::2]]
    files += [("files", ("half.zip", zipped.getvalue(), "application/zip")),
              ("files", ("bad.dcm", bad.read_bytes(), "application/dicom"))]  # fmt: skip
    response = requests.post(url(service, "/v1/studies"), files=files, headers=AUTH, timeout=60)
    assert response.status_code == 202, response.text
    body = response.json()
    assert_schema(service, body, "UploadResponse")
    assert (body["stored"], body["refused"]) == (len(study.files), 1)
    (job,) = body["jobs"]
    assert job["study_instance_uid"] == study.study_instance_uid
    assert response.headers["location"] == f"/v1/jobs/{job['job_id']}"
    (refused,) = [i for i in body["instances"] if not i["stored"]]
    assert (refused["file"], refused["status"], refused["reason"]) == (
        "bad.dcm", "0xA900", "pixel-data-truncated"
    )  # fmt: skip
    assert "Pixel Data has" in refused["detail"] and refused["sop_instance_uid"] == bad_uid
    job_url = url(service, f"/v1/jobs/{job['job_id']}")
    early = requests.get(f"{job_url}/result", headers=AUTH, timeout=10)  # in the quiet period
    assert assert_problem(early, 409, "results-not-ready")["state"] in (
        "received",
        "queued",
        "processing",
    )

    def finished() -> Any:
        view = requests.get(job_url, headers=AUTH, timeout=10).json()
        return view if view["state"] in ("done", "failed", "dead_letter") else None

    view = wait_for(finished, 90, "the uploaded study's job")
    assert view["state"] == "done", view["error"]
    assert_schema(service, view, "JobView")
    assert view["source"] == "http" and view["instances"] == len(study.files)
    assert view["links"]["result"] == f"/v1/jobs/{job['job_id']}/result"
    source = pydicom.dcmread(study.files[0], stop_before_pixels=True)
    assert str(source.PatientName) not in json.dumps(view)
    assert str(source.PatientID) not in json.dumps(view)

    archive_rsp = requests.get(f"{job_url}/result", headers=AUTH, timeout=30)
    assert archive_rsp.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(archive_rsp.content)).namelist()
    assert sorted(names) == sorted([*view["outputs"], "report.json"])
    parts_rsp = requests.get(f"{job_url}/result", headers={**AUTH, "Accept": RELATED}, timeout=30)
    assert parts_rsp.status_code == 200 and parts_rsp.headers["content-type"].startswith(RELATED)
    parts = split_related(parts_rsp)
    assert len(parts) == len(view["outputs"]) == 3
    segs = [p for p in parts if str(pydicom.dcmread(io.BytesIO(p)).SOPClassUID) == SEG_CLASS]
    (seg_path := tmp_path / "seg.dcm").write_bytes(segs[0])
    assert str(pydicom.dcmread(seg_path).StudyInstanceUID) == study.study_instance_uid
    assert_dicom_valid(seg_path)
    junk = [("files", ("x.dcm", b"not dicom", "application/dicom"))]
    refused_all = requests.post(url(service, "/v1/studies"), files=junk, headers=AUTH, timeout=10)
    assert assert_problem(refused_all, 422, "nothing-stored")["instances"][0]["status"] == "0xC210"


@pytest.mark.requirement("SRS-045")
def test_stow_rs_stores_a_study(service: Service, tmp_path: Path) -> None:
    study = make_study(tmp_path / "study", seed=62)
    body, content_type = related([p.read_bytes() for p in study.files])
    target = url(service, f"/dicomweb/studies/{study.study_instance_uid}")
    headers = {**AUTH, "Content-Type": content_type, "Accept": "application/dicom+json"}
    response = requests.post(target, data=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    ds = stow_response(response)
    sent = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in study.files}
    assert {str(i.ReferencedSOPInstanceUID) for i in ds.ReferencedSOPSequence} == sent
    assert all(str(i.ReferencedSOPClassUID) == "1.2.840.10008.5.1.4.1.1.2"
               for i in ds.ReferencedSOPSequence)  # fmt: skip
    assert "FailedSOPSequence" not in ds and "OtherFailuresSequence" not in ds
    job_id = response.headers["link"].split(">")[0].removeprefix("</v1/jobs/")
    job = service.journal.get(job_id)
    assert job is not None and job.source == "http" and job.instances == len(study.files)
    again = requests.post(target, data=body, headers=headers, timeout=60)  # idempotent
    assert again.status_code == 200 and service.journal.get(job_id).instances == len(sent)  # type: ignore[union-attr]
    assert metric(service.metrics.registry, "minivess_instances_received_total",
                  interface="http") >= len(sent)  # fmt: skip


@pytest.mark.requirement("SRS-045", "SRS-042")
def test_stow_rs_reports_each_failure(service: Service, tmp_path: Path) -> None:
    study = make_study(tmp_path / "study", seed=63)
    bad = tmp_path / "bad.dcm"
    bad_uid = truncated_copy(study.files[0], bad)
    good = [p.read_bytes() for p in study.files[:3]]
    body, content_type = related([*good, bad.read_bytes(), b"garbage, not DICOM"])
    headers = {**AUTH, "Content-Type": content_type}
    response = requests.post(url(service, "/dicomweb/studies"), data=body, headers=headers,
                             timeout=60)  # fmt: skip
    assert response.status_code == 202, response.text
    ds = stow_response(response)
    assert len(ds.ReferencedSOPSequence) == 3
    (failed,) = ds.FailedSOPSequence
    assert (str(failed.ReferencedSOPInstanceUID), failed.FailureReason) == (bad_uid, 0xA900)
    assert [item.FailureReason for item in ds.OtherFailuresSequence] == [0xC210]
    assert "Pixel Data has" in response.headers["warning"]
    # An instance of another study posted to a study's URL: refused, nothing stored (409).
    other = make_study(tmp_path / "other", seed=64).files[0].read_bytes()
    body, content_type = related([other])
    mismatch = requests.post(url(service, f"/dicomweb/studies/{study.study_instance_uid}"),
                             data=body, headers={**AUTH, "Content-Type": content_type},
                             timeout=30)  # fmt: skip
    assert mismatch.status_code == 409
    assert stow_response(mismatch).FailedSOPSequence[0].FailureReason == 0xA900
    assert "differs from the target study" in mismatch.headers["warning"]


@pytest.mark.requirement("SRS-045")
def test_stow_rs_refuses_malformed_requests(service: Service) -> None:
    stow = url(service, "/dicomweb/studies")
    wrong = requests.post(stow, data=b"{}", timeout=10,
                          headers={**AUTH, "Content-Type": "application/json"})  # fmt: skip
    assert "multipart/related" in assert_problem(wrong, 415, "unsupported-media-type")["detail"]
    metadata = requests.post(
        stow,
        data=b"",
        timeout=10,
        headers={
            **AUTH,
            "Content-Type": 'multipart/related; type="application/dicom+json"; boundary=x',
        },
    )
    assert_problem(metadata, 415, "unsupported-media-type")
    body, content_type = related([b"x"])
    xml = requests.post(
        stow,
        data=body,
        timeout=10,
        headers={**AUTH, "Content-Type": content_type, "Accept": "application/dicom+xml"},
    )
    assert_problem(xml, 406, "not-acceptable")
    no_boundary = requests.post(stow, data=body, timeout=10,
                                headers={**AUTH, "Content-Type": RELATED})  # fmt: skip
    assert "boundary" in assert_problem(no_boundary, 400, "bad-request")["detail"]
    cut = requests.post(stow, data=body[:-30], timeout=10,
                        headers={**AUTH, "Content-Type": content_type})  # fmt: skip
    assert "closing boundary" in assert_problem(cut, 400, "bad-request")["detail"]
    bad_uid = requests.post(f"{stow}/not-a-uid", data=body, timeout=10,
                            headers={**AUTH, "Content-Type": content_type})  # fmt: skip
    assert_problem(bad_uid, 400, "bad-request")


@pytest.mark.requirement("SRS-047")
def test_bearer_token_guards_the_api(service: Service) -> None:
    jobs = url(service, "/v1/jobs/0123456789abcdef")
    missing = requests.get(jobs, timeout=10)
    assert_problem(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = requests.get(jobs, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert "invalid_token" in wrong.headers["www-authenticate"]
    assert_problem(wrong, 401, "unauthorized")
    basic = requests.get(jobs, headers={"Authorization": "Basic dXNlcjpwdw=="}, timeout=10)
    assert_problem(basic, 401, "unauthorized")
    stow = requests.post(url(service, "/dicomweb/studies"), data=b"", timeout=10)
    assert_problem(stow, 401, "unauthorized")
    assert "no job" in assert_problem(requests.get(jobs, headers=AUTH, timeout=10), 404,
                                      "job-not-found")["detail"]  # fmt: skip
    for path in ("/livez", "/readyz", "/metrics", "/openapi.json"):  # open: probes, scrapes
        assert requests.get(url(service, path), timeout=10).status_code == 200, path
    assert_problem(requests.get(url(service, "/no/such/route"), timeout=10), 404)
    assert_problem(requests.delete(url(service, "/v1/studies"), headers=AUTH, timeout=10), 405)


@pytest.mark.requirement("SRS-045")
def test_openapi_lists_the_routes(service: Service) -> None:
    spec = requests.get(url(service, "/openapi.json"), timeout=10).json()
    assert spec["openapi"].startswith("3.")
    for path, method in [("/v1/studies", "post"), ("/v1/jobs/{job_id}", "get"),
                         ("/v1/jobs/{job_id}/result", "get"), ("/dicomweb/studies", "post"),
                         ("/dicomweb/studies/{study}", "post"), ("/livez", "get"),
                         ("/readyz", "get"), ("/metrics", "get")]:  # fmt: skip
        assert method in spec["paths"][path], path
    assert spec["paths"]["/v1/studies"]["post"]["security"] == [{"bearerAuth": []}]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert requests.get(url(service, "/docs.json"), timeout=10).json() == spec
    page = requests.get(url(service, "/docs"), timeout=10)  # Swagger UI; / is the console
    assert "swagger-ui" in page.text and "googletagmanager" not in page.text
    problem = requests.get(url(service, "/problems/job-not-found"), timeout=10).json()
    assert problem["title"] == "Job not found"
    metrics = requests.get(url(service, "/metrics"), timeout=10).text
    assert "minivess_instances_received_total" in metrics


@pytest.mark.requirement("SRS-046", "SRS-047")
def test_readyz_names_the_failed_check_and_dev_mode_is_open(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path / "var", http_port=free_port(), dev_mode=True,
                            min_free_disk_bytes=10**18, max_instance_bytes=2**16)  # fmt: skip
    with Service(settings, pipeline=pipeline, http=True) as full:
        body = assert_problem(requests.get(url(full, "/readyz"), timeout=10), 503, "not-ready")
        assert body["checks"]["spool"]["ok"] is False and "watermark" in body["detail"]
        assert body["checks"]["models"]["ok"] and body["checks"]["gateway"]["ok"]
        assert requests.get(url(full, "/livez"), timeout=10).status_code == 200
        unknown = requests.get(url(full, "/v1/jobs/unknown"), timeout=10)  # no token: dev mode
        assert_problem(unknown, 404, "job-not-found")
        study = make_study(tmp_path / "study", seed=65)
        body_, content_type = related([study.files[0].read_bytes()])
        refused = requests.post(url(full, "/dicomweb/studies"), data=body_, timeout=30,
                                headers={"Content-Type": content_type})  # fmt: skip
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert stow_response(refused).FailedSOPSequence[0].FailureReason == 0xA700
        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w") as archive:
            archive.write(study.files[0], "a.dcm")
        upload = requests.post(url(full, "/v1/studies"), data=zipped.getvalue(), timeout=30,
                               headers={"Content-Type": "application/zip"})  # fmt: skip
        body = assert_problem(upload, 503, "nothing-stored")
        assert body["instances"][0]["reason"] == "disk-full" and upload.headers["retry-after"]
        big, content_type = related([bytes(2**17)])  # over max_instance_bytes: never retried
        too_large = requests.post(url(full, "/dicomweb/studies"), data=big, timeout=30,
                                  headers={"Content-Type": content_type})  # fmt: skip
        assert too_large.status_code == 409 and "retry-after" not in too_large.headers
        assert stow_response(too_large).OtherFailuresSequence[0].FailureReason == 0xA700


@pytest.mark.requirement("SRS-045", "SRS-046", "SRS-047")
def test_serve_runs_the_http_sidecar(tmp_path: Path) -> None:
    """``python -m service serve`` (what ``make serve`` runs) with auth from the env."""
    port = free_port()
    config = tmp_path / "service.json"
    config.write_text(settings_for(tmp_path / "var", http_port=port).model_dump_json())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MINIVESS_API_TOKEN": TOKEN}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "service", "--config", str(config),
                                    "serve"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    try:

        def ready() -> bool:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).ok
            except requests.ConnectionError:
                return False

        wait_for(ready, 90, "the served sidecar to be ready")
        jobs = f"http://127.0.0.1:{port}/v1/jobs/unknown"
        assert requests.get(jobs, timeout=5).status_code == 401
        assert_problem(requests.get(jobs, headers=AUTH, timeout=5), 404, "job-not-found")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()[-3000:]
    assert TOKEN not in log.read_text()
