"""What became of one received instance: its Storage Service status and, when refused, why.

The statuses are the Storage Service ones (PS3.4 B.2.3), which the DIMSE gateway answers
and STOW-RS reuses as Failure Reasons (PS3.18 10.5.3, Annex I.2.2). Each refusal has its
own :class:`Reason`, always with the same status, and a short Error Comment (PS3.7 C.4):

| status | reason | meaning |
| --- | --- | --- |
| 0x0000 | stored / duplicate | on disk (fsynced); a known SOP Instance UID is not stored twice |
| 0x0122 | sop-class-not-supported | not a CT/MR image storage SOP class (HTTP only) |
| 0xA700 | disk-full | free disk under ``min_free_disk_bytes``; nothing written |
| 0xA700 | too-large | over ``max_instance_bytes`` as received or once inflated (deflate bomb) |
| 0xA701 | write-failed | the spool could not be written |
| 0xA702 | too-many-studies | ``max_pending_jobs`` unfinished studies; new studies wait |
| 0xA900 | sop-class-mismatch, sop-instance-mismatch | command and data set UIDs differ |
| 0xA900 | invalid-uid | SOP Instance, Study or Series UID missing or malformed |
| 0xA900 | no-pixel-data, pixel-data-truncated, pixel-data-corrupt | image without (whole) pixels |
| 0xA900 | pixel-module-invalid | Rows, Columns, Bits Allocated/Stored missing or absurd |
| 0xA900 | pixel-module-mismatch | native Pixel Data longer than the Image Pixel module says |
| 0xA900 | study-mismatch | STOW-RS: not of the target study (PS3.18 10.5) |
| 0xC210 | undecodable | the data set cannot be parsed |
| 0xC210 | unsupported-part-type | STOW-RS: a part that is not application/dicom |
| 0xC210 | malformed-body | STOW-RS: the body broke off after some parts were stored |
| 0xC210 | bad-zip, bad-zip-member | upload: not a readable zip; a member that cannot be extracted |

:func:`record_refusal` is the one place a refusal is counted
(``minivess_instances_rejected_total{interface, reason}``) and logged: the gateway's
C-STORE, the HTTP upload and STOW-RS all go through it. The log line holds the interface,
status, reason and our own comment (and the SOP Instance UID when the command named one,
as the journal does), never a client's file name, which may name the patient.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from service.observability.metrics import ApplianceMetrics

log = logging.getLogger(__name__)

SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
WRITE_FAILED = 0xA701
TOO_MANY_STUDIES = 0xA702
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC210


class Reason(StrEnum):
    """Why an instance was refused: the ``reason`` label of the refusal counter."""

    SOP_CLASS_NOT_SUPPORTED = "sop-class-not-supported"
    DISK_FULL = "disk-full"
    TOO_LARGE = "too-large"
    WRITE_FAILED = "write-failed"
    TOO_MANY_STUDIES = "too-many-studies"
    SOP_CLASS_MISMATCH = "sop-class-mismatch"
    SOP_INSTANCE_MISMATCH = "sop-instance-mismatch"
    INVALID_UID = "invalid-uid"
    NO_PIXEL_DATA = "no-pixel-data"
    PIXEL_DATA_TRUNCATED = "pixel-data-truncated"
    PIXEL_DATA_CORRUPT = "pixel-data-corrupt"
    PIXEL_MODULE_INVALID = "pixel-module-invalid"
    PIXEL_MODULE_MISMATCH = "pixel-module-mismatch"
    STUDY_MISMATCH = "study-mismatch"
    UNDECODABLE = "undecodable"
    UNSUPPORTED_PART_TYPE = "unsupported-part-type"
    MALFORMED_BODY = "malformed-body"
    BAD_ZIP = "bad-zip"
    BAD_ZIP_MEMBER = "bad-zip-member"

    @property
    def status(self) -> int:
        return _STATUS.get(self, DATASET_MISMATCH if self in _MISMATCH else CANNOT_UNDERSTAND)


# The 0xA7xx refusals for lack of resources that a retry later may overcome (an instance
# too large to take is 0xA700 too, but never will be taken).
TEMPORARY = frozenset({Reason.DISK_FULL, Reason.WRITE_FAILED, Reason.TOO_MANY_STUDIES})
_STATUS = {
    Reason.SOP_CLASS_NOT_SUPPORTED: SOP_CLASS_NOT_SUPPORTED,
    Reason.DISK_FULL: OUT_OF_RESOURCES,
    Reason.TOO_LARGE: OUT_OF_RESOURCES,
    Reason.WRITE_FAILED: WRITE_FAILED,
    Reason.TOO_MANY_STUDIES: TOO_MANY_STUDIES,
}
_MISMATCH = frozenset({
    Reason.SOP_CLASS_MISMATCH, Reason.SOP_INSTANCE_MISMATCH, Reason.INVALID_UID,
    Reason.NO_PIXEL_DATA, Reason.PIXEL_DATA_TRUNCATED, Reason.PIXEL_DATA_CORRUPT,
    Reason.PIXEL_MODULE_INVALID, Reason.PIXEL_MODULE_MISMATCH, Reason.STUDY_MISMATCH,
})  # fmt: skip


@dataclass(frozen=True)
class IngestResult:
    status: int
    reason: str  # "stored", "duplicate" or a Reason
    comment: str = ""
    study_uid: str | None = None
    sop_uid: str | None = None
    job_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS


def refusal(reason: Reason, comment: str) -> IngestResult:
    """The refusal for ``reason`` (its status; the comment cut to an Error Comment's 64)."""
    return IngestResult(reason.status, reason, comment[:64])


def record_refusal(
    metrics: ApplianceMetrics, interface: str, result: IngestResult, sop_uid: str | None = None
) -> None:
    """Count and log one refused instance (see the module docstring: no file names)."""
    metrics.instances_rejected.labels(interface, result.reason).inc()
    log.warning(
        "refused instance %s (%s): 0x%04X %s: %s",
        sop_uid or "?", interface, result.status, result.reason, result.comment,
    )  # fmt: skip
