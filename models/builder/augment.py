"""Intensity augmentation of training patches with MONAI transforms (seeded).

The generator already randomises the physics of each training study (``synthetic.
appearance``); these transforms add per-patch variation in the normalised space, so that
contrast curves, noise, blur and resolution a member meets at a site sit inside what it
trained on: RandScaleIntensity / RandShiftIntensity (gain and offset), RandAdjustContrast
(gamma), RandHistogramShift (non-linear intensity remapping), RandBiasField, RandGaussian-
Noise, RandGaussianSmooth and RandSimulateLowResolution (thick slices, low in-plane
resolution). Each is applied with its own probability from ``AugmentationRecipe``.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandBiasField,
    RandGaussianNoise,
    RandGaussianSmooth,
    RandHistogramShift,
    RandScaleIntensity,
    RandShiftIntensity,
    RandSimulateLowResolution,
)

from models.builder.config import AugmentationRecipe


class Augmenter:
    """``augment(patch)`` for a (z, y, x) float32 patch; deterministic for a given seed."""

    def __init__(self, recipe: AugmentationRecipe, seed: int) -> None:
        self.transform = Compose(
            [
                RandScaleIntensity(factors=0.25, prob=recipe.scale),
                RandShiftIntensity(offsets=0.15, prob=recipe.shift),
                RandAdjustContrast(gamma=(0.7, 1.5), prob=recipe.gamma),
                RandHistogramShift(num_control_points=(5, 10), prob=recipe.histogram_shift),
                RandBiasField(coeff_range=(0.0, 0.1), prob=recipe.bias_field),
                RandGaussianNoise(std=0.08, prob=recipe.noise),
                RandGaussianSmooth(
                    sigma_x=(0.3, 1.2), sigma_y=(0.3, 1.2), sigma_z=(0.3, 1.5), prob=recipe.smooth
                ),
                RandSimulateLowResolution(zoom_range=(0.4, 0.9), prob=recipe.low_resolution),
            ]
        )
        self.transform.set_random_state(seed=seed)

    def __call__(self, patch: np.ndarray) -> np.ndarray:
        out = self.transform(torch.from_numpy(np.ascontiguousarray(patch))[None])
        return np.asarray(out[0], dtype=np.float32)
