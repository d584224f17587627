"""NIfTI research input without the operator framework (no Holoscan import).

The MiniVess research data are NIfTI. A NIfTI file has no study or series, so the volume
is named after the file and no DICOM objects are written for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from operators.errors import (
    GeometryError,
    InputNotFoundError,
    PixelDataError,
    VolumeTooLargeError,
)
from operators.nifti.io import read_nifti
from operators.values import SeriesVolume

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
