"""Trilinear resampling between grids that share voxel (0, 0, 0) and axes.

A member runs on its own isotropic grid; its input is resampled from the study's grid and
its probability back (``models.inference``). Trilinear interpolation is separable, so it
is done one axis at a time (three passes over memory instead of eight neighbours per
voxel): the same values as ``scipy.ndimage.affine_transform(order=1, mode="nearest")``
with a diagonal matrix, within float32 rounding, several times faster on large volumes.
``resample_box`` computes only a sub-box of the output, so a probability that is zero
outside the windows that were run is resampled only where it can be non-zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Spacing = tuple[float, float, float]
Box = tuple[slice, slice, slice]
_CHUNK_VOXELS = 1 << 22  # per slab of an interpolation pass (16 MiB of float32)


def resampled_shape(shape: Sequence[int], source: Spacing, target: Spacing) -> tuple[int, int, int]:
    """Grid on ``target`` spacing covering the same voxel-centre extent, first centres aligned."""
    out = [
        int(np.floor((n - 1) * s / t + 1e-6)) + 1
        for n, s, t in zip(shape, source, target, strict=True)
    ]
    return (out[0], out[1], out[2])


def _interpolate_axis(volume: np.ndarray, axis: int, coordinates: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``volume`` along ``axis`` at ``coordinates`` (clamped: "nearest")."""
    last = volume.shape[axis] - 1
    if (
        len(coordinates)
        and coordinates[-1] <= last
        and np.array_equal(
            coordinates, np.arange(coordinates[0], coordinates[0] + len(coordinates))
        )
    ):  # the same spacing: whole voxels, nothing to interpolate
        index = [slice(None)] * 3
        index[axis] = slice(int(coordinates[0]), int(coordinates[0]) + len(coordinates))
        return volume[tuple(index)]
    clamped = np.clip(coordinates, 0.0, float(last))
    lower = np.minimum(np.floor(clamped).astype(np.intp), last)
    upper = np.minimum(lower + 1, last)
    fraction = (clamped - lower).astype(np.float32)
    shape = [1, 1, 1]
    shape[axis] = len(coordinates)
    fraction = fraction.reshape(shape)
    out_shape = list(volume.shape)
    out_shape[axis] = len(coordinates)
    out = np.empty(out_shape, dtype=np.float32)
    # Slab by slab along z: the neighbours' copies stay small (a whole-volume pass would
    # hold two more volumes at once, half a gigabyte each on a large study).
    step = max(1, _CHUNK_VOXELS // max(1, int(np.prod(out_shape[1:]))))
    for start in range(0, out_shape[0], step):
        rows = slice(start, start + step)
        if axis == 0:
            below, above = volume[lower[rows]], volume[upper[rows]]
            weight = fraction[rows]
        else:
            below = np.take(volume[rows], lower, axis=axis)
            above = np.take(volume[rows], upper, axis=axis)
            weight = fraction
        above -= below
        above *= weight
        above += below
        out[rows] = above
    return out


def _source_coordinates(out_start: int, out_stop: int, source: float, target: float) -> np.ndarray:
    return np.arange(out_start, out_stop, dtype=np.float64) * (target / source)


def resample(
    volume: np.ndarray,
    source: Spacing,
    target: Spacing,
    shape: Sequence[int] | None = None,
) -> np.ndarray:
    """``volume`` (on ``source`` spacing) on ``target`` spacing, float32.

    ``shape`` defaults to the grid covering the same extent (``resampled_shape``); beyond
    the source's last voxel the edge value continues.
    """
    out_shape = tuple(shape) if shape is not None else resampled_shape(volume.shape, source, target)
    if tuple(source) == tuple(target) and out_shape == volume.shape:
        return volume
    box = (slice(0, out_shape[0]), slice(0, out_shape[1]), slice(0, out_shape[2]))
    return resample_box(volume, source, target, box)


def resample_box(volume: np.ndarray, source: Spacing, target: Spacing, box: Box) -> np.ndarray:
    """The sub-box ``box`` (output indices) of ``resample(volume, source, target, ...)``.

    Only the source voxels that box reads are touched. Axes are interpolated in the order
    that shrinks the data most first.
    """
    result = np.asarray(volume, dtype=np.float32)
    # Crop the source to what the box reads (one voxel of margin for the upper neighbour).
    crop = []
    coordinates = []
    for axis in range(3):
        wanted = _source_coordinates(box[axis].start, box[axis].stop, source[axis], target[axis])
        last = volume.shape[axis] - 1
        low = int(np.clip(np.floor(wanted.min(initial=0.0)), 0, last)) if len(wanted) else 0
        high = int(np.clip(np.floor(wanted.max(initial=0.0)) + 2, low + 1, last + 1))
        crop.append(slice(low, high))
        coordinates.append(wanted - low)
    result = result[tuple(crop)]
    ratios = [len(c) / max(n, 1) for c, n in zip(coordinates, result.shape, strict=True)]
    for axis in sorted(range(3), key=lambda a: ratios[a]):
        result = _interpolate_axis(result, axis, coordinates[axis])
    return np.ascontiguousarray(result, dtype=np.float32)
