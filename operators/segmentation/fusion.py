"""Fusing the ensemble members into one result: probability, mask, uncertainty, review flag.

Plain numpy over the loaded ensemble's manifest, free of Holoscan: the
``UncertaintyOperator`` (:mod:`operators.segmentation.operators`), the benchmarks and the
tests call it alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.inference import fuse
from models.loader import LoadedEnsemble
from models.lumen_growth import MrMaskRules
from models.normalisation import resolve_modality
from models.uncertainty import study_score, temperature_scaled, voxel_uncertainty
from operators.values import SegmentationResult

Box = tuple[slice, slice, slice]
SLAB = 32  # slices per block when finding where the members are non-zero


def nonzero_boxes(member_probabilities: np.ndarray) -> list[Box]:
    """Boxes (slabs of ``SLAB`` slices, cropped in-plane) outside which every member is 0.

    With the lumen screen most of a large field of view is 0 in every member; each map is
    one constant there, so the maps are computed only inside these boxes.
    """
    boxes = []
    for start in range(0, member_probabilities.shape[1], SLAB):
        slab = slice(start, start + SLAB)
        plane = np.any(member_probabilities[:, slab], axis=(0, 1))
        rows, columns = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
        if len(rows):
            boxes.append((slab, slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1)))
    return boxes


def _voxel_maps(
    member_probabilities: np.ndarray,
    method: str,
    weights: Sequence[float],
    threshold: float,
    temperature: float,
) -> dict[str, np.ndarray]:
    """Every voxel-wise output of the fusion; a voxel's values depend on its own only."""
    probability = fuse(member_probabilities, method, weights, threshold)
    mask = (probability >= threshold).astype(np.uint8)
    if method != "majority":  # a vote fraction is not a probability to rescale
        probability = temperature_scaled(probability, temperature)
    maps = voxel_uncertainty(member_probabilities)
    return {
        "mean_probability": probability.astype(np.float32),
        "mask": mask,
        "predictive_entropy": maps.predictive_entropy,
        "expected_entropy": maps.expected_entropy,
        "mutual_information": maps.mutual_information,
    }


def voxel_maps(
    member_probabilities: np.ndarray,
    method: str,
    weights: Sequence[float],
    threshold: float,
    temperature: float,
) -> dict[str, np.ndarray]:
    """``_voxel_maps`` of the whole (members, z, y, x) stack, computed where a member is not 0.

    Elsewhere each map takes its value at an all-zero voxel, computed by the same function,
    so the result is what the whole volume would give.
    """
    members, *shape = member_probabilities.shape
    zero = np.zeros((members, 1, 1, 1), np.float32)
    at_zero = _voxel_maps(zero, method, weights, threshold, temperature)
    out = {
        name: np.full(shape, value.flat[0], dtype=value.dtype) for name, value in at_zero.items()
    }
    for box in nonzero_boxes(member_probabilities):
        inside = _voxel_maps(
            member_probabilities[(slice(None), *box)], method, weights, threshold, temperature
        )
        for name, value in inside.items():
            out[name][box] = value
    return out


def segmentation_result(
    ensemble: LoadedEnsemble,
    member_probabilities: np.ndarray,
    fusion: str | None,
    spacing: tuple[float, float, float],
    image: np.ndarray,
    modality: str,
) -> SegmentationResult:
    """Fuse members and compute the uncertainty maps, study score and review flag.

    The fused probability is temperature-scaled (``calibration.temperature``; the 0.5 cut
    and so the mask are unchanged), the study score is the one the manifest names.
    ``member_probabilities`` are those of the members run on ``modality``. In MR
    the mask loses the faint components and grows into the bright lumen, as the manifest's
    rules say (:mod:`models.lumen_growth`; ``image`` is the study on the same grid); the
    probability and uncertainty maps keep what the members said.
    """
    manifest = ensemble.manifest
    calibration = manifest.calibration
    threshold = manifest.probability_threshold
    modality = resolve_modality(modality, image)
    members = manifest.members_for(modality)
    weights = [member.weight for member in members]
    maps = voxel_maps(
        member_probabilities, fusion or manifest.fusion, weights, threshold, calibration.temperature
    )
    rules = MrMaskRules(calibration.mr_faint_component_ratio, calibration.mr_lumen_growth)
    if modality == "MR" and rules.growth is not None:
        # The rule reads the fused probability before temperature scaling, as chosen.
        fused = fuse(member_probabilities, fusion or manifest.fusion, weights, threshold)
    else:
        fused = maps["mean_probability"]  # not read: the rules leave CT alone
    maps["mask"], dropped, grown = rules.apply(maps["mask"], fused, image, modality)
    vessel_ml = float(np.count_nonzero(maps["mask"])) * float(np.prod(spacing)) / 1000.0
    return SegmentationResult(
        **maps,
        uncertainty_score=study_score(
            calibration.score,
            member_probabilities,
            vessel_ml,
            calibration.min_vessel_ml,
            threshold,
        ),
        ood_threshold=calibration.ood_threshold,
        model_name=manifest.name,
        model_version=manifest.version,
        member_names=tuple(member.name for member in members),
        faint_components_dropped=dropped.components,
        faint_voxels_dropped=dropped.voxels,
        lumen_voxels_grown=grown,
    )
