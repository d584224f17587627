"""Segmentation metrics for binary vessel masks (MetricsReloaded definitions).

Dice: 2|P∩L| / (|P|+|L|). clDice (Shit et al. 2021): harmonic mean of topology precision
|S(P)∩L|/|S(P)| and topology sensitivity |S(L)∩P|/|S(L)|, S = 3D skeleton. HD95: the 95th
percentile of the symmetric surface distances in mm (both directions pooled), using the
voxel spacing.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    p = prediction.astype(bool)
    t = truth.astype(bool)
    denominator = int(p.sum()) + int(t.sum())
    if denominator == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, t).sum()) / denominator


def cldice(prediction: np.ndarray, truth: np.ndarray) -> float:
    from skimage.morphology import skeletonize  # builder-only dependency

    p = prediction.astype(bool)
    t = truth.astype(bool)
    if not p.any() and not t.any():
        return 1.0
    if not p.any() or not t.any():
        return 0.0
    skeleton_p = skeletonize(p)
    skeleton_t = skeletonize(t)
    precision = (skeleton_p & t).sum() / max(int(skeleton_p.sum()), 1)
    sensitivity = (skeleton_t & p).sum() / max(int(skeleton_t.sum()), 1)
    if precision + sensitivity == 0:
        return 0.0
    return float(2.0 * precision * sensitivity / (precision + sensitivity))


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(prediction: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """95th percentile Hausdorff distance in mm; inf when exactly one mask is empty."""
    p = prediction.astype(bool)
    t = truth.astype(bool)
    if not p.any() and not t.any():
        return 0.0
    if not p.any() or not t.any():
        return float("inf")
    surface_p = _surface(p)
    surface_t = _surface(t)
    to_t = ndimage.distance_transform_edt(~surface_t, sampling=spacing)
    to_p = ndimage.distance_transform_edt(~surface_p, sampling=spacing)
    distances = np.concatenate([to_t[surface_p], to_p[surface_t]])
    return float(np.percentile(distances, 95))
