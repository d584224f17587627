"""Research input: a NIfTI volume in, NIfTI mask and uncertainty volumes out.

The MiniVess research data are NIfTI. A NIfTI file has no study or series, so the volume
is named after the file and no DICOM objects are written for it.
"""

from __future__ import annotations

from typing import Any

from monai.deploy.core import Fragment, Operator, OperatorSpec

from operators.nifti.io import write_nifti
from operators.nifti.volume import read_nifti_volume
from operators.run_report import RunRecorder, SeriesOutcome
from operators.values import SeriesWork


class NiftiLoaderOperator(Operator):
    """Reads the run's NIfTI input. Output ``series_work`` (one volume)."""

    def __init__(
        self,
        fragment: Fragment,
        *args: Any,
        memory_budget_bytes: int,
        recorder: RunRecorder,
        **kwargs: Any,
    ) -> None:
        self.memory_budget_bytes = memory_budget_bytes
        self.recorder = recorder
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("series_work")

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


class NiftiWriterOperator(Operator):
    """Input ``series_work``; writes mask, probability and uncertainty volumes as NIfTI."""

    def __init__(
        self, fragment: Fragment, *args: Any, recorder: RunRecorder, **kwargs: Any
    ) -> None:
        self.recorder = recorder
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("series_work")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        work: list[SeriesWork] = op_input.receive("series_work")
        for item in work:
            assert item.result is not None
            outcome = self.recorder.outcome(item.volume.series_instance_uid)
            stem = item.volume.series_instance_uid
            volumes = {
                "vessel_mask": item.result.mask,
                "mean_probability": item.result.mean_probability,
                "predictive_entropy": item.result.predictive_entropy,
                "expected_entropy": item.result.expected_entropy,
                "mutual_information": item.result.mutual_information,
            }
            with self.recorder.stage("write NIfTI"):
                for kind, array in volumes.items():
                    path = self.recorder.output_dir / f"{stem}_{kind}.nii.gz"
                    write_nifti(path, array, item.volume.geometry)
                    outcome.outputs[kind] = str(path)
