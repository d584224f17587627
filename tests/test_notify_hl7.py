"""HL7 v2 ORU^R01 over MLLP: the message, parsed back with hl7apy, and its delivery with
the export's retries against an MLLP listener on 127.0.0.1 that ACKs (notify_support)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from hl7apy.parser import parse_message

from service.export import Exporter
from service.journal import Journal
from service.notify.hl7 import escape
from service.observability.metrics import ApplianceMetrics
from service.spool import Spool
from tests.notify_support import (  # the fixtures of the notification tests
    exporting_job,
    journal_fixture,  # noqa: F401
    mllp_listener,
    result_file_fixture,  # noqa: F401
)
from tests.service_support import settings_for

STUDY = "1.2.826.0.1.3680043.8.498.78"


@pytest.mark.requirement("SRS-044", "SRS-087")
def test_oru_r01_is_acknowledged_and_parses_back(
    tmp_path: Path, journal: Journal, result_file: Path
) -> None:
    with mllp_listener(["AA"]) as ris:
        settings = settings_for(tmp_path / "var", hl7_host="127.0.0.1", hl7_port=ris.port,
                                hl7_receiving_application="RADIS")  # fmt: skip
        exporter = Exporter(settings, journal, Spool(settings.spool_dir), ApplianceMetrics())
        job = exporter.export(exporting_job(journal, tmp_path / "out", result_file, STUDY))
    assert job.state == "done" and job.delivered == [f"hl7:127.0.0.1:{ris.port}"]
    (message,) = ris.messages
    oru = parse_message(message, find_groups=True)
    assert oru.msh.msh_9.to_er7() == "ORU^R01^ORU_R01" and oru.msh.msh_5.value == "RADIS"
    source = pydicom.dcmread(result_file, stop_before_pixels=True)
    result = oru.ORU_R01_PATIENT_RESULT
    assert result.ORU_R01_PATIENT.pid.pid_3.cx_1.value == escape(str(source.PatientID))
    order = result.ORU_R01_ORDER_OBSERVATION
    assert order.obr.obr_3.value == escape(str(source.get("AccessionNumber", "")))
    rows = [
        (o.obx.obx_3.ce_1.value, o.obx.obx_4.value, o.obx.obx_5.to_er7())
        for o in order.ORU_R01_OBSERVATION
    ]
    assert rows == [
        ("118565006", "1", "12.5000"), ("DISAGREE", "1", "0.050000"),
        ("REVIEW", "1", "N^No^HL70136"),
        ("118565006", "2", "3.2500"), ("DISAGREE", "2", "0.400000"),
        ("REVIEW", "2", "Y^Yes^HL70136"),
    ]  # fmt: skip


@pytest.mark.requirement("SRS-044", "SRS-087")
def test_a_refusing_ris_is_retried_then_dead_lettered_and_nothing_is_lost(
    tmp_path: Path, journal: Journal, result_file: Path
) -> None:
    with mllp_listener(["AE", "AR", "AA"]) as ris:
        settings = settings_for(tmp_path / "var", hl7_host="127.0.0.1", hl7_port=ris.port,
                                export_retries=1)  # fmt: skip
        exporter = Exporter(settings, journal, Spool(settings.spool_dir), ApplianceMetrics())
        job = exporting_job(journal, tmp_path / "out", result_file, STUDY)
        job = exporter.export(job)
        assert job.state == "exporting" and "MSA-1 AE" in (job.error or "")
        job = exporter.export(job)
        assert job.state == "dead_letter" and "MSA-1 AR" in (job.error or "")
        job = exporter.export(journal.retry_export(job.job_id))
    assert job.state == "done"
    control_ids = {parse_message(m).msh.msh_10.value for m in ris.messages}
    assert len(ris.messages) == 3 and len(control_ids) == 1  # the same message each time


@pytest.mark.requirement("SRS-044", "SRS-087")
def test_escaping_keeps_delimiters_out_of_fields() -> None:
    assert escape("A|B^C&D~E\\F") == "A\\F\\B\\S\\C\\T\\D\\R\\E\\E\\F"
