"""The vessel Measurement Report as a Comprehensive 3D SR (PS3.3 A.35.13).

Content: PS3.16 TID 1500 Measurement Report, observed by the device, procedure
"Angiography", one TID 1411 group for the vessel segment (see :mod:`.content`). Evidence
(SR Document General Module, C.17.2: Current Requested Procedure Evidence Sequence) is
the source series and the Segmentation the group refers to; all three share the study.
"""

from __future__ import annotations

import highdicom as hd

from operators.dicom_output.common import (
    DicomOutputError,
    OutputKind,
    OutputSettings,
    add_private_coding_scheme,
    check_inputs,
    describe_series,
    identity,
)
from operators.dicom_output.seg.enum import BLOOD_VESSEL, VESSEL_SEGMENT_NUMBER
from operators.dicom_output.sr.content import device_observer_context, vessel_measurement_group
from operators.dicom_output.sr.enum import ANGIOGRAPHY
from operators.values import SegmentationResult, SeriesVolume

__all__ = ["build_measurement_report"]


def _check_segmentation(volume: SeriesVolume, segmentation: hd.seg.Segmentation) -> None:
    """The report may only point at a SEG of this series with a vessel segment 1."""
    if str(segmentation.StudyInstanceUID) != volume.study_instance_uid:
        raise DicomOutputError("the segmentation belongs to another study than the volume")
    referenced = {
        str(item.SeriesInstanceUID) for item in segmentation.get("ReferencedSeriesSequence", [])
    }
    if volume.series_instance_uid not in referenced:
        raise DicomOutputError("the segmentation does not reference the volume's series")
    segments = {int(s.SegmentNumber): s for s in segmentation.get("SegmentSequence", [])}
    vessel = segments.get(VESSEL_SEGMENT_NUMBER)
    if (
        vessel is None
        or vessel.SegmentedPropertyTypeCodeSequence[0].CodeValue != BLOOD_VESSEL.value
    ):
        raise DicomOutputError(
            f"the segmentation has no '{BLOOD_VESSEL.meaning}' segment {VESSEL_SEGMENT_NUMBER}"
        )


def build_measurement_report(
    volume: SeriesVolume,
    result: SegmentationResult,
    segmentation: hd.seg.Segmentation,
    settings: OutputSettings | None = None,
) -> hd.sr.Comprehensive3DSR:
    """TID 1500 report of the vessel volume, uncertainty score and review flag.

    ``segmentation`` is the (binary) vessel SEG built from the same ``volume`` and
    ``result``; the report references its segment 1 and the source series.
    """
    settings = settings or OutputSettings()
    check_inputs(volume, result)
    _check_segmentation(volume, segmentation)
    kind = OutputKind.REPORT
    equipment = settings.equipment
    report = hd.sr.MeasurementReport(
        observation_context=device_observer_context(settings),
        procedure_reported=ANGIOGRAPHY,
        imaging_measurements=[vessel_measurement_group(volume, result, segmentation, settings)],
    )
    try:
        sr = hd.sr.Comprehensive3DSR(
            evidence=[*volume.source_datasets, segmentation],
            content=report[0],
            **identity(settings, kind, volume, result),
            # Machine-made and unverified: complete, but preliminary until a reader signs.
            is_complete=True,
            is_final=False,
            is_verified=False,
        )
    except (ValueError, TypeError) as exc:
        raise DicomOutputError(f"highdicom refused the measurement report: {exc}") from exc
    describe_series(sr, settings, kind, volume, result)
    sr.ManufacturerModelName = equipment.model_name
    sr.SoftwareVersions = equipment.software_versions_value
    sr.DeviceSerialNumber = equipment.device_serial_number
    add_private_coding_scheme(sr)
    return sr
