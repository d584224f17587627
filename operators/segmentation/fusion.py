"""Fusing the ensemble members into one result: probability, mask, uncertainty, review flag.

Plain numpy over the loaded ensemble's manifest, free of Holoscan: the
``UncertaintyOperator`` (:mod:`operators.segmentation.operators`), the benchmarks and the
tests call it alike.
"""

from __future__ import annotations

import numpy as np

from models.inference import fuse
from models.loader import LoadedEnsemble
from models.uncertainty import study_score, temperature_scaled, voxel_uncertainty
from operators.values import SegmentationResult


def segmentation_result(
    ensemble: LoadedEnsemble,
    member_probabilities: np.ndarray,
    fusion: str | None,
    spacing: tuple[float, float, float],
) -> SegmentationResult:
    """Fuse members and compute the uncertainty maps, study score and review flag.

    The fused probability is temperature-scaled (``calibration.temperature``; the 0.5 cut
    and so the mask are unchanged), the study score is the one the manifest names.
    """
    manifest = ensemble.manifest
    calibration = manifest.calibration
    method = fusion or manifest.fusion
    weights = [member.weight for member in manifest.members]
    probability = fuse(member_probabilities, method, weights, manifest.probability_threshold)
    mask = (probability >= manifest.probability_threshold).astype(np.uint8)
    if method != "majority":  # a vote fraction is not a probability to rescale
        probability = temperature_scaled(probability, calibration.temperature)
    maps = voxel_uncertainty(member_probabilities)
    vessel_ml = float(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0
    return SegmentationResult(
        mean_probability=probability.astype(np.float32),
        mask=mask,
        predictive_entropy=maps.predictive_entropy,
        expected_entropy=maps.expected_entropy,
        mutual_information=maps.mutual_information,
        uncertainty_score=study_score(
            calibration.score,
            member_probabilities,
            vessel_ml,
            calibration.min_vessel_ml,
            manifest.probability_threshold,
        ),
        ood_threshold=calibration.ood_threshold,
        model_name=manifest.name,
        model_version=manifest.version,
        member_names=tuple(member.name for member in manifest.members),
    )
