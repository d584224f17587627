"""Accepting one received instance: check it, spool it durably, record it in the journal.

Shared by the DIMSE gateway (C-STORE) and the HTTP sidecar (uploads, STOW-RS), so both
answer with the same Storage Service statuses and refusal reasons (the table in
:mod:`service.storage_status`, which also counts and logs every refusal).
"""

from __future__ import annotations

import io
import logging
import threading
import zlib

import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian

from service.journal import Journal
from service.observability.metrics import ApplianceMetrics
from service.settings import ServiceSettings
from service.spool import Spool, is_uid
from service.storage_status import (
    SUCCESS,
    IngestResult,
    Reason,
    record_refusal,
    refusal,
)

log = logging.getLogger(__name__)

# PS3.4 B.5: the image storage SOP classes the appliance segments.
IMAGE_STORAGE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.3": "Enhanced MR Color Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR Image Storage",
}


BITS_ALLOCATED = frozenset({1, 8, 16, 32, 64})  # PS3.5 8.1.1 (64: float pixel data)
_INFLATE_STEP = 1 << 20


def _pixel_module(ds: Dataset) -> tuple[int, int] | IngestResult:
    """(Bits Allocated, samples in all frames) of the Image Pixel module, or the refusal.

    Values are only multiplied, never allocated: Rows/Columns claiming gigabytes cost
    nothing here and are refused below as truncated.
    """
    try:
        bits = int(ds.BitsAllocated)
        stored = int(ds.get("BitsStored", bits))
        sizes = [int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel", 1))]
        sizes.append(int(ds.get("NumberOfFrames", 1) or 1))
    except (AttributeError, TypeError, ValueError):  # absent, multi-valued, wrong VR
        return refusal(Reason.PIXEL_MODULE_INVALID, "Image Pixel module incomplete")
    if bits not in BITS_ALLOCATED or not 1 <= stored <= bits:
        return refusal(Reason.PIXEL_MODULE_INVALID,
                       f"BitsAllocated {bits} / BitsStored {stored} invalid")  # fmt: skip
    if min(sizes) < 1:
        return refusal(Reason.PIXEL_MODULE_INVALID, "Rows/Columns/Frames below 1")
    return bits, sizes[0] * sizes[1] * sizes[2] * sizes[3]


def _pixel_problem(ds: Dataset) -> IngestResult | None:
    """Pixel data the pipeline cannot use: missing, empty, truncated, inconsistent with
    the Image Pixel module, or broken encapsulation (PS3.5 8.1.1, 8.2, A.4)."""
    if "PixelData" not in ds:
        return refusal(Reason.NO_PIXEL_DATA, "Image has no Pixel Data")
    module = _pixel_module(ds)
    if isinstance(module, IngestResult):
        return module
    value = ds.PixelData or b""
    if not value:
        return refusal(Reason.NO_PIXEL_DATA, "Pixel Data is empty")
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        try:
            if not any(True for _ in generate_fragments(value)):
                raise ValueError("no fragments")
        except (ValueError, TypeError):
            return refusal(Reason.PIXEL_DATA_CORRUPT, "Encapsulated Pixel Data broken")
        return None
    bits, count = module
    expected = (count * bits + 7) // 8
    if len(value) < expected:
        return refusal(Reason.PIXEL_DATA_TRUNCATED,
            f"Pixel Data has {len(value)} of {expected} bytes",
        )  # fmt: skip
    if len(value) > expected + 1:  # one pad byte to an even length (PS3.5 7.1.1)
        return refusal(Reason.PIXEL_MODULE_MISMATCH,
            f"Pixel Data has {len(value)} bytes, Image Pixel module {expected}",
        )  # fmt: skip
    return None


def _too_large(data: bytes, limit: int) -> IngestResult | None:
    """Refuse data over ``limit`` bytes, also once inflated: pydicom inflates a Deflated
    Explicit VR Little Endian data set whole, and 1 MB of deflate can hold 1 GB."""
    if len(data) > limit:
        return refusal(Reason.TOO_LARGE, f"Data set over {limit} bytes")
    stream = io.BytesIO(data)
    try:
        read_preamble(stream, False)
        meta = read_dataset(stream, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            return None
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        pending, inflated = data[stream.tell() :], 0
        while pending and inflated <= limit:  # count in 1 MiB steps, keep nothing
            inflated += len(inflater.decompress(pending, _INFLATE_STEP))
            pending = inflater.unconsumed_tail
    except Exception:  # not ours to judge: the full parse names the problem
        return None
    if inflated > limit:
        return refusal(Reason.TOO_LARGE, f"Inflated data set over {limit} bytes")
    return None


def check_instance(
    data: bytes,
    sop_class_uid: str | None = None,
    sop_instance_uid: str | None = None,
    max_bytes: int | None = None,
) -> tuple[Dataset | None, IngestResult | None]:
    """Parse and check one Part 10 instance: (dataset, None) or (None, refusal)."""
    if max_bytes is not None and (oversize := _too_large(data, max_bytes)) is not None:
        return None, oversize
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        # pydicom reads leniently: garbage often parses into elements we cannot use.
        found_class = str(ds.SOPClassUID)
        found_instance = str(ds.SOPInstanceUID)
    except Exception:  # pydicom raises many kinds on garbage: all mean "cannot understand"
        return None, refusal(Reason.UNDECODABLE, "Data set cannot be parsed")
    try:
        study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
    except Exception:
        return None, refusal(Reason.INVALID_UID, "Missing Study/Series UID")
    if sop_class_uid is not None and found_class != sop_class_uid:
        return None, refusal(Reason.SOP_CLASS_MISMATCH, "SOP Class UID mismatch")
    if sop_instance_uid is not None and found_instance != sop_instance_uid:
        return None, refusal(Reason.SOP_INSTANCE_MISMATCH, "SOP Instance UID mismatch")
    if found_class not in IMAGE_STORAGE_SOP_CLASSES:
        return None, refusal(Reason.SOP_CLASS_NOT_SUPPORTED, "Not CT/MR")
    if not all(is_uid(uid) for uid in (found_instance, study, series)):
        return None, refusal(Reason.INVALID_UID, "Invalid SOP/Study/Series UID")
    try:
        problem = _pixel_problem(ds)
    except Exception:
        problem = refusal(Reason.UNDECODABLE, "Pixel Data cannot be parsed")
    return (None, problem) if problem else (ds, None)


class InstanceIngest:
    """Check, spool and journal each received instance, whichever interface brought it
    (C-STORE, HTTP upload, STOW-RS); one per service."""

    def __init__(
        self,
        settings: ServiceSettings,
        spool: Spool,
        journal: Journal,
        metrics: ApplianceMetrics,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.journal = journal
        self.metrics = metrics
        self._admission = threading.Lock()

    def accept(
        self,
        data: bytes,
        *,
        interface: str,
        sop_class_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> IngestResult:
        """Store one Part 10 instance (bytes as received); never raises for bad input."""
        result = self._accept(data, interface, sop_class_uid, sop_instance_uid)
        if result.reason == "duplicate":
            self.metrics.instances_duplicate.labels(interface).inc()
        elif result.ok:
            self.metrics.instances_received.labels(interface).inc()
            self.metrics.spool_bytes.set(self.spool.bytes_held)
        else:
            record_refusal(self.metrics, interface, result, sop_instance_uid)
        return result

    def _accept(
        self, data: bytes, interface: str, sop_class: str | None, sop_instance: str | None
    ) -> IngestResult:
        ds, refused = check_instance(data, sop_class, sop_instance,
                                     self.settings.max_instance_bytes)  # fmt: skip
        if refused is not None or ds is None:
            return refused or refusal(Reason.UNDECODABLE, "Unreadable")
        study, sop = str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)
        if self.journal.is_known(sop):
            self.journal.register_instance(study, sop, self.spool.path_of(study, sop), 0)
            return IngestResult(SUCCESS, "duplicate", "", study, sop)
        if self.spool.free_bytes() - len(data) < self.settings.min_free_disk_bytes:
            return refusal(Reason.DISK_FULL, "Spool disk under its free watermark")
        if self.journal.has_open_job(study):  # a study being received is never cut short
            return self._store(data, study, sop, interface)
        # A new study is admitted under a lock: unlocked, concurrent associations all passed
        # the count before any registered its job (soak: 8 unfinished with a limit of 4).
        with self._admission:
            if (
                not self.journal.has_open_job(study)
                and self.journal.count_unfinished() >= self.settings.max_pending_jobs
            ):
                return refusal(Reason.TOO_MANY_STUDIES, "Too many studies pending")
            return self._store(data, study, sop, interface)

    def _store(self, data: bytes, study: str, sop: str, interface: str) -> IngestResult:
        try:
            path = self.spool.store(study, sop, data)
        except OSError as error:
            log.error("spool write failed for %s: %s", sop, error)
            return refusal(Reason.WRITE_FAILED, "Spool write failed")
        registered = self.journal.register_instance(study, sop, path, len(data), source=interface)
        if registered.duplicate:  # the same instance on two associations at once
            return IngestResult(SUCCESS, "duplicate", "", study, sop)
        if registered.new_job:
            log.info("study %s: new job %s (%s)", study, registered.job_id, interface)
        return IngestResult(SUCCESS, "stored", "", study, sop, registered.job_id)
