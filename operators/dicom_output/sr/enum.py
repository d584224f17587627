"""Coded values of the vessel Measurement Report (PS3.16 TID 1500, TID 1411, TID 300).

Standard codes wherever the standard has one; the study uncertainty score, the OOD
threshold and the review flag have none and use our private scheme (PS3.3 8.2), which
each report declares in its Coding Scheme Identification Sequence.
"""

from __future__ import annotations

from pydicom.sr.coding import Code

from operators.dicom_output.common import PRIVATE_CODING_SCHEME

# CID 100 "Quantitative Diagnostic Imaging Procedures"
ANGIOGRAPHY = Code("77343006", "SCT", "Angiography")
# CID 270 "Observer Type"
DEVICE_OBSERVER = Code("121007", "DCM", "Device")
# CID 7469 "Generic Intensity and Size Measurements"
VOLUME = Code("118565006", "SCT", "Volume")
MILLILITER = Code("mL", "UCUM", "milliliter")
# CID 230 "Yes-No"
YES = Code("373066001", "SCT", "Yes")
NO = Code("373067005", "SCT", "No")

# UCUM "1": a dimensionless ratio.
NO_UNITS = Code("1", "UCUM", "no units")
MEMBER_DISAGREEMENT = Code(
    "DISAGREE", PRIVATE_CODING_SCHEME, "Ensemble disagreement (study uncertainty score)"
)
OOD_THRESHOLD = Code("OOD_THR", PRIVATE_CODING_SCHEME, "Out-of-distribution threshold")
REVIEW_REQUIRED = Code(
    "REVIEW", PRIVATE_CODING_SCHEME, "Human review required (out-of-distribution input)"
)

TRACKING_LABEL = "Vessel tree"
