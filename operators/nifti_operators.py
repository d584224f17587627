"""Research input: a NIfTI volume in, NIfTI mask and uncertainty volumes out.

The MiniVess research data are NIfTI. A NIfTI file has no study or series, so the volume
is named after the file and no DICOM objects are written for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from monai.deploy.core import Fragment, Operator, OperatorSpec

from operators.errors import (
    GeometryError,
    InputNotFoundError,
    PixelDataError,
    VolumeTooLargeError,
)
from operators.run_report import RunRecorder, SeriesOutcome
from operators.segmentation_operators import SeriesWork
from operators.series_volume import SeriesVolume
from synthetic.nifti import read_nifti, write_nifti

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_nifti_volume(path: Path, memory_budget_bytes: int) -> SeriesVolume:
    """A SeriesVolume from a 3D NIfTI file, with the checks DICOM input gets."""
    if not path.is_file():
        raise InputNotFoundError(f"input not found: {path}")
    try:
        voxels, geometry = read_nifti(path)
    except (ValueError, OSError, EOFError) as error:
        raise PixelDataError(f"{path.name}: cannot read NIfTI volume: {error}") from error
    if min(voxels.shape) < 2:
        raise GeometryError(
            f"{path.name}: a volume needs at least 2 voxels along every axis, "
            f"got shape {voxels.shape}"
        )
    needed = voxels.size * 4
    if needed > memory_budget_bytes:
        raise VolumeTooLargeError(
            f"{path.name}: {needed / 2**20:.1f} MiB as float32 exceeds the "
            f"memory budget of {memory_budget_bytes / 2**20:.1f} MiB"
        )
    return SeriesVolume(
        voxels=np.ascontiguousarray(voxels, dtype=np.float32),
        geometry=geometry,
        modality="",
        study_instance_uid="",
        series_instance_uid=nifti_stem(path),
        frame_of_reference_uid="",
        series_description=path.name,
        source_datasets=(),
    )


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
