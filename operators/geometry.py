"""Voxel grid geometry of a volume in the DICOM patient coordinate system (LPS).

The pipeline's volumes (DICOM and NIfTI input) and the synthetic generator's studies share it.

Arrays are indexed ``[k, j, i]``: slice, row, column — the order in which a stack of
DICOM slices is naturally held. Positions follow DICOM PS3.3 C.7.6.2.1.1 (Image Position
and Image Orientation (Patient)): the centre of voxel ``(i, j, k)`` lies at
``origin + i * dx * row_direction + j * dy * column_direction + k * dz * slice_direction``
where ``row_direction`` is the direction in which the column index ``i`` grows (DICOM's
first Image Orientation vector) and ``column_direction`` the direction of ``j``.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Vector3 = tuple[float, float, float]


class VoxelGeometry(BaseModel):
    """Shape, spacing, origin and orientation of a voxel grid (axial by default)."""

    model_config = ConfigDict(frozen=True)

    shape: tuple[int, int, int] = Field(description="(slices, rows, columns)")
    spacing: Vector3 = Field(description="(slice, row, column) spacing in mm: (dz, dy, dx)")
    origin: Vector3 = Field(default=(0.0, 0.0, 0.0), description="LPS mm of voxel (0,0,0)")
    row_direction: Vector3 = (1.0, 0.0, 0.0)
    column_direction: Vector3 = (0.0, 1.0, 0.0)

    @field_validator("shape")
    @classmethod
    def _positive_shape(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(value) < 1:
            raise ValueError(f"every dimension of shape must be >= 1, got {value}")
        return value

    @field_validator("spacing")
    @classmethod
    def _positive_spacing(cls, value: Vector3) -> Vector3:
        if min(value) <= 0:
            raise ValueError(f"spacing must be positive in every axis, got {value}")
        return value

    @model_validator(mode="after")
    def _orthonormal(self) -> VoxelGeometry:
        row = np.asarray(self.row_direction)
        col = np.asarray(self.column_direction)
        if not (np.isclose(np.linalg.norm(row), 1) and np.isclose(np.linalg.norm(col), 1)):
            raise ValueError("row_direction and column_direction must be unit vectors")
        if not np.isclose(row @ col, 0.0, atol=1e-6):
            raise ValueError("row_direction and column_direction must be orthogonal")
        return self

    @property
    def slice_direction(self) -> Vector3:
        """Normal of the slices, the direction in which ``k`` grows (row x column)."""
        normal = np.cross(self.row_direction, self.column_direction)
        return (float(normal[0]), float(normal[1]), float(normal[2]))

    def affine_lps(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) to LPS millimetres."""
        dz, dy, dx = self.spacing
        affine = np.eye(4)
        affine[:3, 0] = np.asarray(self.row_direction) * dx
        affine[:3, 1] = np.asarray(self.column_direction) * dy
        affine[:3, 2] = np.asarray(self.slice_direction) * dz
        affine[:3, 3] = self.origin
        return affine

    def affine_ras(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) to RAS millimetres, as NIfTI expects."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.affine_lps()

    def voxel_centres_lps(self) -> np.ndarray:
        """LPS positions of every voxel centre, shape ``(*shape, 3)``, float32."""
        nz, ny, nx = self.shape
        k, j, i = np.meshgrid(
            np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij", copy=False
        )
        affine = self.affine_lps()
        out = np.empty((nz, ny, nx, 3), dtype=np.float32)
        for axis in range(3):
            out[..., axis] = (
                affine[axis, 0] * i + affine[axis, 1] * j + affine[axis, 2] * k + affine[axis, 3]
            )
        return out

    def extent_mm(self) -> Vector3:
        """Physical size (z, y, x) covered by the voxel centres, in mm."""
        return (
            (self.shape[0] - 1) * self.spacing[0],
            (self.shape[1] - 1) * self.spacing[1],
            (self.shape[2] - 1) * self.spacing[2],
        )
