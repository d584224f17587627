"""The vessel Segmentation object (PS3.3 A.51 Segmentation IOD).

One segment (Blood vessel), one frame per source slice: every frame holds the mask of
one slice, references that slice's instance (Derivation Image Functional Group,
C.7.6.16.2.6) and carries its Image Position (Patient) (Plane Position (Patient),
C.7.6.16.2.3), so the SEG lies voxel for voxel on the source grid. Frame order is
highdicom's spatial sort (Dimension Organization Type 3D): the reverse of the volume's
``k`` order, whichever way the patient lay. Empty frames are kept on purpose: some
viewers shift a SEG whose frames do not cover every source slice.

``BINARY`` (C.8.20.2.3: 1 bit per pixel) is the clinical object; ``FRACTIONAL``
``PROBABILITY`` (8 bits, 255 = probability 1) carries the fused ensemble probability for
viewers that render soft masks.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np

from operators.dicom_output.common import (
    DicomOutputError,
    OutputKind,
    OutputSettings,
    check_inputs,
    describe_series,
    enhanced_equipment,
    flagged_description,
    identity,
)
from operators.dicom_output.seg.content import vessel_segment
from operators.values import SegmentationResult, SeriesVolume

__all__ = ["MAX_FRACTIONAL_VALUE", "build_vessel_segmentation", "content_label"]

MAX_FRACTIONAL_VALUE = 255  # Maximum Fractional Value (C.8.20.2): 8-bit probabilities


def content_label(result: SegmentationResult, fractional: bool) -> str:
    """Content Label (CS, 16 chars, C.10.9): states the review flag to label-only viewers."""
    base = "VESSPROB" if fractional else "VESSELS"
    return f"{base}_REVIEW" if result.out_of_distribution else base


def build_vessel_segmentation(
    volume: SeriesVolume,
    result: SegmentationResult,
    settings: OutputSettings | None = None,
    *,
    fractional: bool = False,
) -> hd.seg.Segmentation:
    """Segmentation of ``result`` on ``volume``'s own slices, in the source study.

    ``fractional=False`` encodes ``result.mask`` as a BINARY segmentation;
    ``fractional=True`` encodes ``result.mean_probability`` as FRACTIONAL PROBABILITY in
    its own series. Out-of-distribution studies say so in Series Description, Content
    Description and Content Label. Raises :class:`DicomOutputError` for inputs that do
    not fit the volume (shape, value range, missing sources).
    """
    settings = settings or OutputSettings()
    check_inputs(volume, result)
    kind = OutputKind.PROBABILITY if fractional else OutputKind.SEGMENTATION
    if fractional:
        pixels = np.asarray(result.mean_probability, dtype=np.float32)
        seg_type = hd.seg.SegmentationTypeValues.FRACTIONAL
    else:
        pixels = np.asarray(result.mask, dtype=np.uint8)
        seg_type = hd.seg.SegmentationTypeValues.BINARY
    what = "vessel probability" if fractional else "vessel segmentation"
    try:
        seg = hd.seg.Segmentation(
            source_images=list(volume.source_datasets),
            pixel_array=pixels,
            segmentation_type=seg_type,
            segment_descriptions=[vessel_segment(result)],
            **identity(settings, kind, volume, result),
            **enhanced_equipment(settings.equipment),
            fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
            max_fractional_value=MAX_FRACTIONAL_VALUE,
            content_description=flagged_description(
                f"MinIVess {what}", result, settings.ood_marker
            ),
            content_label=content_label(result, fractional),
            transfer_syntax_uid=settings.transfer_syntax_uid,
            omit_empty_frames=False,
        )
    except (ValueError, TypeError) as exc:
        raise DicomOutputError(f"highdicom refused the {what}: {exc}") from exc
    describe_series(seg, settings, kind, volume, result)
    return seg
