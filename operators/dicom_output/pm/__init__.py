"""Uncertainty maps as Parametric Maps (PS3.3 A.75 Parametric Map IOD)."""

from operators.dicom_output.pm.enum import UncertaintyQuantity
from operators.dicom_output.pm.sop import build_uncertainty_map

__all__ = ["UncertaintyQuantity", "build_uncertainty_map"]
