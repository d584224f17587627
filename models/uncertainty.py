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
    """H(p) in nats, float32; computed in place on one copy (volumes are large)."""
    q = np.clip(p, _EPS, 1.0 - _EPS).astype(np.float32, copy=False)
    out = np.log(q)
    out *= q
    complement = np.subtract(1.0, q, dtype=np.float32)
    np.log(complement, out=q)  # q is our own copy: reuse it for log(1 - p)
    q *= complement
    out += q
    np.negative(out, out=out)
    return out


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
    mean = member_probabilities.mean(axis=0, dtype=np.float32)
    total = binary_entropy(mean)
    aleatoric = np.zeros_like(total)
    for probability in member_probabilities:  # one member at a time: bounded memory
        aleatoric += binary_entropy(probability)
    aleatoric /= np.float32(member_probabilities.shape[0])
    epistemic = np.subtract(total, aleatoric)
    np.maximum(epistemic, 0.0, out=epistemic)
    return VoxelUncertainty(mean, total, aleatoric, epistemic)


def study_uncertainty_score(maps: VoxelUncertainty) -> float:
    """Mean mutual information over the voxels that might be vessel (0 if none)."""
    region = maps.mean_probability >= SCORE_REGION_PROBABILITY
    if not region.any():
        return 0.0
    return float(maps.mutual_information[region].mean())
