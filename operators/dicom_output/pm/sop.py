"""An uncertainty map as a Parametric Map object (PS3.3 A.75 Parametric Map IOD).

One float32 frame per source slice (Floating Point Image Pixel Module, C.7.6.24), each
referencing its source slice and carrying its position, in the source study and frame
of reference, so that viewers can fuse it with the angiogram. Values are nats; see
:mod:`operators.dicom_output.pm.enum` for the quantity codes and the unit.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np

from operators.dicom_output.common import (
    DicomOutputError,
    OutputKind,
    OutputSettings,
    add_private_coding_scheme,
    check_inputs,
    copy_body_part,
    describe_series,
    enhanced_equipment,
    flagged_description,
    identity,
)
from operators.dicom_output.pm.content import real_world_value_mapping, window
from operators.dicom_output.pm.enum import CONTENT_LABELS, QUANTITY_CODES, UncertaintyQuantity
from operators.values import SegmentationResult, SeriesVolume

__all__ = ["UncertaintyQuantity", "build_uncertainty_map"]

_KINDS = {
    UncertaintyQuantity.MUTUAL_INFORMATION: OutputKind.MUTUAL_INFORMATION,
    UncertaintyQuantity.PREDICTIVE_ENTROPY: OutputKind.PREDICTIVE_ENTROPY,
    UncertaintyQuantity.EXPECTED_ENTROPY: OutputKind.EXPECTED_ENTROPY,
}


def build_uncertainty_map(
    volume: SeriesVolume,
    result: SegmentationResult,
    quantity: UncertaintyQuantity | str = UncertaintyQuantity.MUTUAL_INFORMATION,
    settings: OutputSettings | None = None,
) -> hd.pm.ParametricMap:
    """Parametric Map of ``result``'s ``quantity`` map, in nats, on ``volume``'s slices.

    ``quantity`` is ``"mutual_information"`` (epistemic), ``"predictive_entropy"``
    (total) or ``"expected_entropy"`` (aleatoric). Raises :class:`DicomOutputError` for
    an unknown quantity or a map that does not fit the volume.
    """
    settings = settings or OutputSettings()
    try:
        quantity = UncertaintyQuantity(quantity)
    except ValueError:
        choices = ", ".join(q.value for q in UncertaintyQuantity)
        raise DicomOutputError(
            f"unknown quantity {quantity!r}; expected one of {choices}"
        ) from None
    check_inputs(volume, result)
    # Rounding may leave -1e-7 nats (the result bounds it); a map of nats is >= 0.
    values = np.clip(np.asarray(getattr(result, quantity.value), dtype=np.float32), 0.0, None)
    kind = _KINDS[quantity]
    centre, width = window(values)
    meaning = QUANTITY_CODES[quantity].meaning
    label = CONTENT_LABELS[quantity]
    try:
        pm = hd.pm.ParametricMap(
            source_images=list(volume.source_datasets),
            pixel_array=values,
            **identity(settings, kind, volume, result),
            **enhanced_equipment(settings.equipment),
            contains_recognizable_visual_features=False,
            real_world_value_mappings=[real_world_value_mapping(quantity, values)],
            voi_lut_transformations=[
                # LINEAR_EXACT: a window narrower than 1 (nats are small) is only
                # permitted with this function (PS3.3 C.11.2.1.3.2).
                hd.VOILUTTransformation(
                    window_center=centre,
                    window_width=width,
                    window_explanation="0 to max nats",
                    voi_lut_function=hd.VOILUTFunctionValues.LINEAR_EXACT,
                )
            ],
            transfer_syntax_uid=settings.transfer_syntax_uid,
            content_description=flagged_description(
                f"MinIVess {meaning}", result, settings.ood_marker
            ),
            content_label=f"{label}_REVIEW" if result.out_of_distribution else label,
            content_qualification=settings.content_qualification,
        )
    except (ValueError, TypeError) as exc:
        raise DicomOutputError(f"highdicom refused the {quantity.value} map: {exc}") from exc
    describe_series(pm, settings, kind, volume, result)
    add_private_coding_scheme(pm)
    copy_body_part(volume, pm)
    return pm
