"""No PHI in what the service writes about its work: logs, metrics, traces, audit, journal.

Real studies with known, unusual patient names and IDs go through the gateway, the
pipeline and the export to Orthanc; a refused instance and a failing study take the error
paths too. Logging is set up as ``python -m service serve`` does (``setup_logging``), at
DEBUG. Then every log line (captured and on disk), the Prometheus exposition, the trace
files, the audit log, the drift features, the journal and the run reports are searched for
every identifying value: none may appear. (The DICOM results themselves carry the patient
module, as the standard requires; they are not logs.)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import requests
from prometheus_client import generate_latest
from pydicom.uid import ExplicitVRLittleEndian

from map_app.pipeline import Pipeline
from service.__main__ import setup_logging
from service.app import Service
from synthetic.case import Modality, generate_case
from synthetic.dicom_attributes import StudyIdentity
from synthetic.dicom_series import DicomQuirks, WrittenSeries, write_series
from tests.peers import run_orthanc, storescu
from tests.service_support import (
    CT_IMAGE,
    MODELS,
    SMALL_FOV,
    association,
    settings_for,
    truncated_copy,
    wait_finished,
)

pytestmark = [pytest.mark.peer, pytest.mark.slow]

TOKEN = "phi-test-token-5d0c"
PATIENTS = [  # (name, id, birth date, accession): values that occur nowhere by chance
    ("Quuxbottom^Hildegunde^Xaveria", "PHI-7F3A9C", "19230517", "ACCQX4711"),
    ("Zwetschgenmayr^Ottokar", "PHI-B81D02", "19320229", "ACCZW0815"),
    ("Pfefferkorn^Leberecht", "PHI-44C0E1", "19451108", "ACCPF0042"),
    ("Brombeerstrauch^Wunibald", "PHI-90E5D7", "19380712", "ACCBR0377"),  # sent over HTTP
]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def root_logging() -> Iterator[Capture]:
    """Root logging as the service sets it up, plus a capture; restored afterwards."""
    root = logging.getLogger()
    before = (root.level, list(root.handlers), logging.getLogger("pynetdicom").level)
    capture = Capture()
    capture.setFormatter(logging.Formatter("%(name)s %(message)s %(exc_text)s"))
    root.addHandler(capture)
    yield capture
    root.setLevel(before[0])
    for handler in root.handlers[:]:
        if handler not in before[1]:
            root.removeHandler(handler)
            handler.close()
    logging.getLogger("pynetdicom").setLevel(before[2])


def patient_study(folder: Path, index: int, slices: int | None = None) -> WrittenSeries:
    name, patient_id, birth, accession = PATIENTS[index]
    identity = StudyIdentity.synthetic(80 + index, Modality.CT, "phi").model_copy(update={
        "patient_name": name, "patient_id": patient_id, "patient_birth_date": birth,
        "accession_number": accession, "referring_physician_name": name,
    })  # fmt: skip
    case = generate_case(80 + index, Modality.CT, fov_mm=SMALL_FOV)
    written = write_series(case, folder, DicomQuirks(), identity)
    if slices is not None:  # a study the pipeline must refuse (one slice)
        for path in written.files[slices:]:
            path.unlink()
        written = written.model_copy(update={"files": written.files[:slices]})
    return written


def markers() -> list[str]:
    """Each identifying value, and each part of each name (logs may split a PN at '^')."""
    found = set()
    for name, patient_id, birth, accession in PATIENTS:
        found |= {name, name.replace("^", " "), patient_id, birth, accession}
        found |= {part for part in name.split("^") if len(part) > 3}
    return sorted(found)


def search(texts: dict[str, str]) -> list[str]:
    pattern = re.compile("|".join(re.escape(m) for m in markers()), re.IGNORECASE)
    return [f"{where}: {hit.group(0)!r}" for where, text in texts.items()
            for hit in pattern.finditer(text)]  # fmt: skip


@pytest.mark.requirement("SRS-071")
def test_no_patient_identifiers_in_logs_metrics_traces_or_audit(
    tmp_path: Path, root_logging: Capture, capfd: pytest.CaptureFixture[str]
) -> None:
    good = [patient_study(tmp_path / f"p{i}", i) for i in (0, 1)]
    single = patient_study(tmp_path / "p2", 2, slices=1)
    over_http = patient_study(tmp_path / "p3", 3)
    bad = tmp_path / "bad" / "truncated.dcm"
    bad.parent.mkdir()
    truncated_copy(good[0].files[0], bad)
    assert str(pydicom.dcmread(bad).PatientName) == PATIENTS[0][0]
    with run_orthanc(tmp_path / "pacs", aet="PACS") as pacs:
        destination = {"host": "127.0.0.1", "port": pacs.dicom_port, "ae_title": "PACS"}
        settings = settings_for(tmp_path / "var", export_destinations=[destination],
                                log_level="DEBUG", api_token=TOKEN)  # fmt: skip
        setup_logging(settings)  # exactly what `python -m service serve` installs
        with Service(settings, pipeline=Pipeline(MODELS), http=True) as service:
            port = service.gateway.port
            for study in [*good, single]:
                storescu("127.0.0.1", port, "MINIVESS", study.files)
            assert service.http is not None
            upload = [("files", (p.name, p.read_bytes(), "application/dicom"))
                      for p in [*over_http.files, bad]]  # fmt: skip
            response = requests.post(f"http://127.0.0.1:{service.http.port}/v1/studies",
                                     files=upload, timeout=60,
                                     headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
            assert response.status_code == 202, response.text
            contexts = [(CT_IMAGE, ExplicitVRLittleEndian)]
            with association(port, contexts=contexts) as assoc:  # the refusal path
                assert assoc.send_c_store(pydicom.dcmread(bad)).Status == 0xA900
            jobs = [wait_finished(service.journal, s.study_instance_uid, timeout=120)
                    for s in [*good, single, over_http]]  # fmt: skip
            exposition = generate_latest(service.metrics.registry).decode()
        assert [job.state for job in jobs] == ["done", "done", "failed", "done"]
    var = settings.var_dir
    texts = {"captured log records": "\n".join(root_logging.lines),
             "stderr": capfd.readouterr().err, "metrics": exposition}  # fmt: skip
    written = [
        *var.glob("logs/*"),
        *var.glob("traces/*"),
        *var.glob("audit/*"),
        *var.glob("drift/*"),
        *var.glob("outputs/*/report.json"),
        *var.glob("journal*"),
    ]
    for path in written:
        texts[str(path.relative_to(var))] = path.read_bytes().decode("latin-1")
    assert {"logs/service.log", "audit/audit.jsonl", "journal.sqlite3"} <= set(texts)
    assert any(name.startswith("traces/") for name in texts)
    assert len(root_logging.lines) > 10  # the run was logged ...
    assert "refused instance" in texts["logs/service.log"]
    assert search(texts) == []  # ... and none of it identifies a patient
    # The check can see PHI where there is some: the results carry the patient module.
    seg = next(p for job in jobs for p in job.outputs if p.endswith(".dcm"))
    assert search({"result": Path(seg).read_bytes().decode("latin-1")})
