"""Turn centreline trees into voxel fields: a signed distance to the vessel wall.

Each pair of consecutive centreline points is a tapered capsule; the signed distance of a
voxel centre is ``distance to the capsule axis - local radius`` (negative inside). The
ground-truth mask is ``sdf <= 0`` at voxel centres; the partial-volume occupancy used for
rendering is a linear ramp of the signed distance over one voxel.
"""

from __future__ import annotations

import numpy as np

from synthetic.tree import Branch

FAR_MM = 10.0


def signed_distance(
    branches: list[Branch], shape: tuple[int, int, int], spacing: tuple[float, float, float]
) -> np.ndarray:
    """Signed distance (mm) to the nearest vessel wall, clipped to +-FAR_MM, float32.

    Coordinates are the grid's own millimetres: voxel ``[k, j, i]`` sits at
    ``(k * dz, j * dy, i * dx)``, the frame in which ``grow_tree`` works.
    """
    sdf = np.full(shape, FAR_MM, dtype=np.float32)
    step = np.asarray(spacing, dtype=float)
    upper = np.asarray(shape) - 1
    for branch in branches:
        for index in range(len(branch.points) - 1):
            _stamp_capsule(
                sdf,
                branch.points[index],
                branch.points[index + 1],
                float(branch.radii[index]),
                float(branch.radii[index + 1]),
                step,
                upper,
            )
    return sdf


def _stamp_capsule(
    sdf: np.ndarray,
    p0: np.ndarray,
    p1: np.ndarray,
    r0: float,
    r1: float,
    step: np.ndarray,
    upper: np.ndarray,
) -> None:
    margin = max(r0, r1) + 1.5 * float(step.max())
    low = np.maximum(np.floor((np.minimum(p0, p1) - margin) / step).astype(int), 0)
    high = np.minimum(np.ceil((np.maximum(p0, p1) + margin) / step).astype(int), upper)
    if np.any(high < low):
        return
    axes = [np.arange(low[a], high[a] + 1) * step[a] for a in range(3)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij", sparse=True)
    axis = p1 - p0
    length_sq = max(float(axis @ axis), 1e-12)
    t = ((zz - p0[0]) * axis[0] + (yy - p0[1]) * axis[1] + (xx - p0[2]) * axis[2]) / length_sq
    t = np.clip(t, 0.0, 1.0)
    dz = zz - (p0[0] + t * axis[0])
    dy = yy - (p0[1] + t * axis[1])
    dx = xx - (p0[2] + t * axis[2])
    distance = np.sqrt(dz * dz + dy * dy + dx * dx) - (r0 + t * (r1 - r0))
    region = sdf[low[0] : high[0] + 1, low[1] : high[1] + 1, low[2] : high[2] + 1]
    np.minimum(region, distance.astype(np.float32), out=region)


def occupancy(sdf: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Fraction of each voxel inside a vessel (partial volume), float32 in [0, 1]."""
    voxel_mm = float(np.prod(spacing)) ** (1.0 / 3.0)
    return np.clip(0.5 - sdf / voxel_mm, 0.0, 1.0).astype(np.float32)
