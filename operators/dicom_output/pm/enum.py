"""Coded values of the uncertainty Parametric Maps (PS3.3 A.75, C.7.6.16.2.11).

The standard has no concept for model (ensemble) uncertainty, so each quantity is a
code of our private scheme (PS3.3 8.2: designators starting "99" are private), declared
in the Coding Scheme Identification Sequence of every object that uses it.

Unit choice: entropies here use the natural logarithm, so their unit is the nat. UCUM
has no nat (its "Np" is the neper, a level of field quantities, not information), but it
allows a dimensionless unit with an annotation: ``{nats}`` (UCUM 4.4, "curly braces"),
which equals 1 for computation and tells a reader the base of the logarithm. For a
two-class (vessel / background) distribution every quantity lies in [0, ln 2].
"""

from __future__ import annotations

import enum
import math

from pydicom.sr.coding import Code

from operators.dicom_output.common import PRIVATE_CODING_SCHEME

NATS = Code("{nats}", "UCUM", "nats")
MAX_BINARY_ENTROPY_NATS = math.log(2.0)


class UncertaintyQuantity(enum.StrEnum):
    """Which per-voxel map of :class:`~operators.values.SegmentationResult`."""

    MUTUAL_INFORMATION = "mutual_information"
    PREDICTIVE_ENTROPY = "predictive_entropy"
    EXPECTED_ENTROPY = "expected_entropy"


QUANTITY_CODES = {
    UncertaintyQuantity.MUTUAL_INFORMATION: Code(
        "MI", PRIVATE_CODING_SCHEME, "Mutual information (epistemic uncertainty)"
    ),
    UncertaintyQuantity.PREDICTIVE_ENTROPY: Code(
        "PE", PRIVATE_CODING_SCHEME, "Predictive entropy (total uncertainty)"
    ),
    UncertaintyQuantity.EXPECTED_ENTROPY: Code(
        "EE", PRIVATE_CODING_SCHEME, "Expected entropy (aleatoric uncertainty)"
    ),
}

# LUT Label is SH (16 chars); Content Label is CS (16 chars, A-Z 0-9 _ space).
LUT_LABELS = {
    UncertaintyQuantity.MUTUAL_INFORMATION: "MI_NATS",
    UncertaintyQuantity.PREDICTIVE_ENTROPY: "PE_NATS",
    UncertaintyQuantity.EXPECTED_ENTROPY: "EE_NATS",
}
CONTENT_LABELS = {
    UncertaintyQuantity.MUTUAL_INFORMATION: "MI_MAP",
    UncertaintyQuantity.PREDICTIVE_ENTROPY: "PE_MAP",
    UncertaintyQuantity.EXPECTED_ENTROPY: "EE_MAP",
}
