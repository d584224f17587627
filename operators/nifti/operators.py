"""Research input: a NIfTI volume in, NIfTI mask and uncertainty volumes out.

The MiniVess research data are NIfTI. A NIfTI file has no study or series, so the volume
is named after the file and no DICOM objects are written for it.
"""

from __future__ import annotations

from typing import Any

from operators.nifti.io import write_nifti
from operators.nifti.volume import read_nifti_volume
from operators.run_operator import SeriesWriterOperator, VolumeSourceOperator
from operators.run_report import SeriesOutcome
from operators.values import SegmentationResult, SeriesVolume, SeriesWork


class NiftiLoaderOperator(VolumeSourceOperator):
    """Reads the run's NIfTI input. Output ``series_work`` (one volume)."""

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        with self.recorder.stage("load"):
            volume = read_nifti_volume(self.recorder.input_path, self.memory_budget_bytes)
        self.recorder.series.append(
            SeriesOutcome(
                study_instance_uid="",
                series_instance_uid=volume.series_instance_uid,
                shape=volume.geometry.shape,
                spacing_mm=volume.geometry.spacing,
                status="done",
            )
        )
        op_output.emit([SeriesWork(volume)], "series_work")


class NiftiWriterOperator(SeriesWriterOperator):
    """Input ``series_work``; writes mask, probability and uncertainty volumes as NIfTI."""

    stage = "write NIfTI"

    def write(self, volume: SeriesVolume, result: SegmentationResult) -> None:
        volumes = {
            "vessel_mask": result.mask,
            "mean_probability": result.mean_probability,
            "predictive_entropy": result.predictive_entropy,
            "expected_entropy": result.expected_entropy,
            "mutual_information": result.mutual_information,
        }
        for kind, array in volumes.items():
            path = self.recorder.output_dir / f"{volume.series_instance_uid}_{kind}.nii.gz"
            write_nifti(path, array, volume.geometry)
            self.record_output(volume, kind, path)
