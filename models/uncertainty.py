"""Voxel-wise ensemble uncertainty and the study-level score.

For member probabilities p_m of the vessel class (members and test-time flips alike):
predictive entropy H(mean p) is the total uncertainty, the expected entropy mean H(p_m)
the aleatoric part, and their difference, the mutual information, the epistemic part
(Depeweg et al. 2018; Lakshminarayanan et al. 2017). Entropies are in nats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-7
# Voxels the ensemble thinks could be vessel; the score ignores confident background,
# which would otherwise dilute it by the size of the field of view.
SCORE_REGION_PROBABILITY = 0.05


def binary_entropy(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    return (-(q * np.log(q) + (1.0 - q) * np.log1p(-q))).astype(np.float32)


@dataclass(frozen=True)
class VoxelUncertainty:
    mean_probability: np.ndarray
    predictive_entropy: np.ndarray
    expected_entropy: np.ndarray
    mutual_information: np.ndarray


def voxel_uncertainty(member_probabilities: np.ndarray) -> VoxelUncertainty:
    """Uncertainty maps from a (members, z, y, x) stack of probabilities."""
    if member_probabilities.ndim != 4 or member_probabilities.shape[0] < 1:
        raise ValueError(f"expected (members, z, y, x), got {member_probabilities.shape}")
    mean = member_probabilities.mean(axis=0)
    total = binary_entropy(mean)
    aleatoric = np.mean([binary_entropy(p) for p in member_probabilities], axis=0)
    epistemic = np.maximum(total - aleatoric, 0.0).astype(np.float32)
    return VoxelUncertainty(mean.astype(np.float32), total, aleatoric.astype(np.float32), epistemic)


def study_uncertainty_score(maps: VoxelUncertainty) -> float:
    """Mean mutual information over the voxels that might be vessel (0 if none)."""
    region = maps.mean_probability >= SCORE_REGION_PROBABILITY
    if not region.any():
        return 0.0
    return float(maps.mutual_information[region].mean())
