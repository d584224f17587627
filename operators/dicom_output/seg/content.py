"""Parts of the vessel Segmentation: segment description and algorithm identification.

PS3.3 C.8.20.2 Segmentation Image Module, Segment Sequence items (Segment Description
Macro, Table 10-25 / C.8.20-4): an AUTOMATIC segment must carry the Segmentation
Algorithm Identification Sequence (Table 10-19 Algorithm Identification Macro).
"""

from __future__ import annotations

import highdicom as hd

from operators.dicom_output.common import LO_MAX, DicomOutputError
from operators.dicom_output.seg.enum import (
    ANATOMICAL_STRUCTURE,
    ARTIFICIAL_INTELLIGENCE,
    BLOOD_VESSEL,
    VESSEL_DISPLAY_RGB,
    VESSEL_SEGMENT_LABEL,
    VESSEL_SEGMENT_NUMBER,
)
from operators.values import SegmentationResult

# Algorithm Parameters is LT (10240 chars); member lists beyond that are a manifest bug.
_LT_MAX = 10240


def algorithm_identification(result: SegmentationResult) -> hd.AlgorithmIdentificationSequence:
    """Algorithm Identification Macro (PS3.3 Table 10-19): the ensemble that produced it.

    Algorithm Name and Version are LO; the ensemble members go into Algorithm Parameters
    so that a reviewer can tell exactly which model files produced the segment.
    """
    for label, value in (
        ("model name", result.model_name),
        ("model version", result.model_version),
    ):
        if not value or len(value) > LO_MAX:
            raise DicomOutputError(f"{label} must be 1..{LO_MAX} characters, got {value!r}")
    parameters = {"members": "+".join(result.member_names) or "(none)"}
    if sum(len(k) + len(v) + 2 for k, v in parameters.items()) > _LT_MAX:
        raise DicomOutputError("the ensemble member names do not fit Algorithm Parameters (LT)")
    return hd.AlgorithmIdentificationSequence(
        name=result.model_name,
        family=ARTIFICIAL_INTELLIGENCE,
        version=result.model_version,
        source="MinIVess",
        parameters=parameters,
    )


def vessel_segment(result: SegmentationResult) -> hd.seg.SegmentDescription:
    """Segment 1, "Blood vessel" (SCT 59820001) in "Anatomical Structure" (SCT 91723000)."""
    return hd.seg.SegmentDescription(
        segment_number=VESSEL_SEGMENT_NUMBER,
        segment_label=VESSEL_SEGMENT_LABEL,
        segmented_property_category=ANATOMICAL_STRUCTURE,
        segmented_property_type=BLOOD_VESSEL,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_identification(result),
        display_color=hd.color.CIELabColor.from_rgb(*VESSEL_DISPLAY_RGB),
    )
