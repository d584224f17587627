"""Coded values of the vessel segment (PS3.3 C.8.20.2 Segment Description Macro).

Category and type come from CID 7150 "Segmentation Property Categories" and CID 7151
"Segmentation Property Types" (PS3.16); the algorithm family from CID 7162 "Algorithm
Family". ``dciodvfy`` does not check code values, so the tests assert these exact codes.
"""

from __future__ import annotations

from pydicom.sr.coding import Code

ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")
BLOOD_VESSEL = Code("59820001", "SCT", "Blood vessel")
ARTIFICIAL_INTELLIGENCE = Code("123110", "DCM", "Artificial Intelligence")

VESSEL_SEGMENT_NUMBER = 1
VESSEL_SEGMENT_LABEL = "Blood vessel"
# Recommended Display CIELab Value (C.8.20.2) is derived from this sRGB red: the colour
# radiologists expect for contrast-filled vessels.
VESSEL_DISPLAY_RGB = (1.0, 0.0, 0.0)
