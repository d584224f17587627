"""Parts of an uncertainty Parametric Map: the Real World Value Mapping and the window.

PS3.3 C.7.6.16.2.11 Real World Value Mapping Functional Group: stored float32 values
map 1:1 (slope 1, intercept 0) to nats over the Double Float First/Last Value Mapped
range (C.7.6.16.2.11.1), with the quantity in the Quantity Definition Sequence.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np

from operators.dicom_output.pm.enum import (
    LUT_LABELS,
    MAX_BINARY_ENTROPY_NATS,
    NATS,
    QUANTITY_CODES,
    UncertaintyQuantity,
)


def value_range(values: np.ndarray) -> tuple[float, float]:
    """[0, ln 2] nats, widened if the data exceed it (several classes, rounding)."""
    return (0.0, max(MAX_BINARY_ENTROPY_NATS, float(np.max(values))))


def real_world_value_mapping(
    quantity: UncertaintyQuantity, values: np.ndarray
) -> hd.pm.RealWorldValueMapping:
    """Identity mapping of stored float32 values to ``quantity`` in nats."""
    meaning = QUANTITY_CODES[quantity].meaning
    return hd.pm.RealWorldValueMapping(
        lut_label=LUT_LABELS[quantity],
        lut_explanation=f"{meaning}, nats"[:64],
        unit=NATS,
        value_range=value_range(values),
        slope=1.0,
        intercept=0.0,
        quantity_definition=QUANTITY_CODES[quantity],
    )


def window(values: np.ndarray) -> tuple[float, float]:
    """(centre, width) spanning 0 to the map's maximum, so the hottest voxel is white.

    Uncertainty concentrates on vessel borders and is tiny elsewhere; a window over the
    theoretical range (ln 2) would render most maps black.
    """
    top = float(np.max(values))
    if top <= 0.0:
        top = MAX_BINARY_ENTROPY_NATS
    return (top / 2.0, top)
