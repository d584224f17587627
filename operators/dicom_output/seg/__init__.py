"""The vessel Segmentation (PS3.3 A.51 Segmentation IOD)."""

from operators.dicom_output.seg.sop import build_vessel_segmentation

__all__ = ["build_vessel_segmentation"]
