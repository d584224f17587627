"""DICOM writers: vessel Segmentation, uncertainty Parametric Maps, Measurement Report.

Laid out like highdicom, one subpackage per object: ``seg`` (PS3.3 A.51), ``pm``
(A.75) and ``sr`` (A.35.13 with PS3.16 TID 1500), each with ``sop.py`` (builds the
object), ``content.py`` (its parts) and ``enum.py`` (its codes); ``common`` holds what
they share (equipment, settings, deterministic UIDs, input checks). :mod:`.operators`
wraps the three as MONAI Deploy operators that write the files (not imported here: it
imports Holoscan).
"""

from operators.dicom_output.common import (
    DicomOutputError,
    Equipment,
    OutputKind,
    OutputSettings,
    SeriesSettings,
)
from operators.dicom_output.pm.sop import UncertaintyQuantity, build_uncertainty_map
from operators.dicom_output.seg.sop import build_vessel_segmentation
from operators.dicom_output.sr.sop import build_measurement_report

__all__ = [
    "DicomOutputError",
    "Equipment",
    "OutputKind",
    "OutputSettings",
    "SeriesSettings",
    "UncertaintyQuantity",
    "build_measurement_report",
    "build_uncertainty_map",
    "build_vessel_segmentation",
]
