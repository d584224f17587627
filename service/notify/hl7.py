"""HL7 v2.5 ORU^R01 result message over MLLP, for sites whose RIS speaks HL7 v2.

Built with ``hl7apy`` (strictly validated against v2.5 before it is sent)::

    MSH|^~\\&|MINIVESS||<hl7_receiving_application>||<time>||ORU^R01^ORU_R01|<id>|P|2.5
    PID|||<Patient ID>^^^<Issuer>
    ORC|RE|||<Accession Number>
    OBR|1||<Accession Number>|18748-4^Diagnostic imaging study^LN|...|F
    OBX|n|NM|118565006^Volume^SCT|<series>|<mL>|mL^milliliter^UCUM|||||F      (per series)
    OBX|n|NM|DISAGREE^Ensemble disagreement^99MINIVESS|<series>|<score>|1^no units^UCUM..
    OBX|n|CE|REVIEW^Human review required^99MINIVESS|<series>|Y or N|...

OBX-4 (observation sub-id) groups a series' three values. The message control id is
derived from the job, so a re-send carries the same id (a RIS that de-duplicates on
MSH-10 files it once). MLLP (HL7 v2 Appendix C): ``<VT> message <FS><CR>``, one
message per exchange, success only on an ACK whose MSA-1 is AA or CA.
"""

from __future__ import annotations

import logging
import socket
import uuid
from pathlib import Path

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from service.journal import Job
from service.notify import NotificationError
from service.notify.results import StudyResult, study_result
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

START, END = b"\x0b", b"\x1c\x0d"
VERSION = "2.5"
PRIVATE = "99MINIVESS"  # the SR's private coding scheme (operators.dicom_output.common)


def escape(value: str) -> str:
    """HL7 v2 escape sequences (2.7.4) for a value placed inside an ER7 field."""
    out = value.replace("\\", "\\E\\")
    for char, code in (("|", "F"), ("^", "S"), ("&", "T"), ("~", "R")):
        out = out.replace(char, f"\\{code}\\")
    return out.replace("\r", " ").replace("\n", " ")


def oru_r01(result: StudyResult, receiving_application: str) -> Message:
    """The ORU^R01 for one study's results; hl7apy's strict v2.5 validation passes."""
    message = Message("ORU_R01", version=VERSION, validation_level=VALIDATION_LEVEL.STRICT)
    msh = message.msh
    msh.msh_3 = "MINIVESS"
    msh.msh_5 = escape(receiving_application)
    msh.msh_7 = result.finished_at.strftime("%Y%m%d%H%M%S")
    msh.msh_9 = "ORU^R01^ORU_R01"
    msh.msh_10 = uuid.uuid5(uuid.NAMESPACE_URL, f"minivess:hl7:{result.job_id}").hex[:20]
    msh.msh_11 = "P"
    patient_result = message.add_group("ORU_R01_PATIENT_RESULT")
    pid = patient_result.add_group("ORU_R01_PATIENT").pid
    pid.pid_3 = f"{escape(result.patient_id)}^^^{escape(result.issuer_of_patient_id)}"
    pid.pid_5 = ""  # the patient's name is not ours to send; PID-3 identifies
    order = patient_result.add_group("ORU_R01_ORDER_OBSERVATION")
    accession = escape(result.accession_number)
    order.orc.orc_1 = "RE"  # observations to follow
    order.orc.orc_3 = accession
    order.obr.obr_1 = "1"
    order.obr.obr_3 = accession  # filler order number: the Accession Number, as DICOM MWL
    order.obr.obr_4 = "18748-4^Diagnostic imaging study^LN"
    order.obr.obr_7 = msh.msh_7.value
    order.obr.obr_25 = "F"
    index = 0
    for sub_id, series in enumerate(result.series, start=1):
        for kind, code, value, unit in (
            ("NM", "118565006^Volume^SCT", f"{series.vessel_volume_ml:.4f}", "mL^milliliter^UCUM"),
            ("NM", f"DISAGREE^Ensemble disagreement^{PRIVATE}",
             f"{series.uncertainty_score:.6f}", "1^no units^UCUM"),
            ("CE", f"REVIEW^Human review required^{PRIVATE}",
             "Y^Yes^HL70136" if series.review else "N^No^HL70136", ""),
        ):  # fmt: skip
            index += 1
            obx = order.add_group("ORU_R01_OBSERVATION").obx
            obx.obx_1 = str(index)
            obx.obx_2 = kind
            obx.obx_3 = code
            obx.obx_4 = str(sub_id)
            obx.obx_5 = value
            if unit:
                obx.obx_6 = unit
            obx.obx_11 = "F"
    message.validate()
    return message


def exchange(host: str, port: int, er7: str, timeout: float) -> str:
    """Send one MLLP-framed message and return the framed answer's text."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(START + er7.encode() + END)
        answer = b""
        while not answer.endswith(END):
            chunk = sock.recv(65536)
            if not chunk:
                raise NotificationError("connection closed before the ACK was complete")
            answer += chunk
    return answer.removeprefix(START).removesuffix(END).decode(errors="replace")


def check_ack(answer: str, control_id: str) -> None:
    """Accept only an ACK with MSA-1 AA/CA for our message control id."""
    try:
        ack = parse_message(answer.replace("\n", "\r"), find_groups=False)
        code, acked = ack.msa.msa_1.value, ack.msa.msa_2.value
    except (HL7apyException, AttributeError, IndexError) as error:
        raise NotificationError(f"answer is not an HL7 ACK: {type(error).__name__}") from None
    if acked != control_id:
        raise NotificationError(f"ACK for message {acked!r}, not {control_id!r}")
    if code not in ("AA", "CA"):
        raise NotificationError(f"message refused: MSA-1 {code}")


class Hl7Channel:
    """Delivery channel of the exporter: the ORU^R01 to ``hl7_host:hl7_port``."""

    def __init__(self, settings: ServiceSettings) -> None:
        if settings.hl7_host is None:
            raise ValueError("hl7_host is not set")
        self.host, self.port = settings.hl7_host, settings.hl7_port
        self.name = f"hl7:{self.host}:{self.port}"
        self.application = settings.hl7_receiving_application
        self.timeout = settings.notification_timeout_s

    def send(self, job: Job, files: list[Path]) -> None:
        message = oru_r01(study_result(job), self.application)
        control_id = str(message.msh.msh_10.value)
        answer = exchange(self.host, self.port, message.to_er7(), self.timeout)
        check_ack(answer, control_id)
        log.info("job %s: ORU^R01 %s acknowledged by %s", job.job_id, control_id, self.name)
