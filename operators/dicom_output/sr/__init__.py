"""The vessel Measurement Report (Comprehensive 3D SR, PS3.16 TID 1500)."""

from operators.dicom_output.sr.sop import build_measurement_report

__all__ = ["build_measurement_report"]
