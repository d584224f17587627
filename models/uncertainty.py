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


def study_uncertainty_score(member_probabilities: np.ndarray, threshold: float = 0.5) -> float:
    """Study-level uncertainty: how much the members disagree on the vessel mask.

    ``1 - mean pairwise Dice`` of the members' masks (0 = identical masks; 1 = disjoint),
    with two empty masks counting as agreeing. On our validation studies it stays below
    ~0.4, while inputs unlike the training data (noise, inverted contrast, heavy noise)
    drive the members apart (0.6-1.0). The voxel mean mutual information was considered
    and rejected: it barely separated such inputs from in-distribution studies.
    """
    if member_probabilities.ndim != 4 or member_probabilities.shape[0] < 2:
        raise ValueError(
            f"need (members >= 2, z, y, x) probabilities, got {member_probabilities.shape}"
        )
    masks = [p >= threshold for p in member_probabilities]
    sizes = [int(m.sum()) for m in masks]
    agreement = []
    for a in range(len(masks)):
        for b in range(a + 1, len(masks)):
            total = sizes[a] + sizes[b]
            overlap = int(np.count_nonzero(masks[a] & masks[b]))
            agreement.append(1.0 if total == 0 else 2.0 * overlap / total)
    return float(1.0 - np.mean(agreement))
