"""NIfTI-1 files for the builder and research inputs (the MiniVess data are NIfTI).

NIfTI stores voxels as (i, j, k) with a RAS affine; our arrays are [k, j, i] with an LPS
geometry, so reading and writing transpose the axes and flip the x/y signs.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from operators.geometry import VoxelGeometry


def write_nifti(path: Path, array: np.ndarray, geometry: VoxelGeometry) -> None:
    """Write ``array[k, j, i]`` with its geometry; gzip when the name ends in .gz."""
    if array.shape != geometry.shape:
        raise ValueError(f"array shape {array.shape} does not match geometry {geometry.shape}")
    image = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), geometry.affine_ras())
    image.header.set_xyzt_units("mm")
    image.set_qform(geometry.affine_ras(), code=1)
    image.set_sform(geometry.affine_ras(), code=1)
    nib.save(image, str(path))


def read_nifti(path: Path) -> tuple[np.ndarray, VoxelGeometry]:
    """Read a 3D NIfTI file as ``array[k, j, i]`` and its LPS geometry."""
    image = nib.load(str(path))
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise ValueError(f"{path.name}: not a NIfTI image")
    if len(image.shape) != 3:
        raise ValueError(f"{path.name}: expected a 3D volume, got shape {image.shape}")
    data = np.asarray(image.dataobj).transpose(2, 1, 0)
    affine_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine
    columns = affine_lps[:3, :3]
    spacing_xyz = np.linalg.norm(columns, axis=0)
    if np.any(spacing_xyz <= 0):
        raise ValueError(f"{path.name}: degenerate affine {image.affine.tolist()}")
    directions = columns / spacing_xyz
    geometry = VoxelGeometry(
        shape=(int(data.shape[0]), int(data.shape[1]), int(data.shape[2])),
        spacing=(float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0])),
        origin=(float(affine_lps[0, 3]), float(affine_lps[1, 3]), float(affine_lps[2, 3])),
        row_direction=tuple(float(v) for v in directions[:, 0]),
        column_direction=tuple(float(v) for v in directions[:, 1]),
    )
    return np.ascontiguousarray(data), geometry
