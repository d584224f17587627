"""Failure detection and calibration measures on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from models.builder.reliability import (
    aurc,
    auroc,
    choose_threshold,
    fit_temperature,
    near_vessel_region,
    reliability,
)
from models.uncertainty import (
    FRAGMENTATION_WEIGHT,
    NO_VESSEL_SCORE,
    fragmented_vessel_entropy,
    mask_fragmentation,
    study_score,
    temperature_scaled,
    vessel_entropy,
)


@pytest.mark.requirement("SRS-081", "SRS-007")
def test_auroc_and_aurc_on_known_rankings() -> None:
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auroc([0.5, 0.5], [False, True]) == 0.5
    assert auroc([0.1, 0.2], [False, False]) is None
    # Perfect ranking: risk only at full coverage. Reversed: the worst study comes first.
    good = aurc([0.1, 0.2, 0.9], [0.0, 0.0, 1.0])
    bad = aurc([0.9, 0.2, 0.1], [0.0, 0.0, 1.0])
    assert good == pytest.approx((0 + 0 + 1 / 3) / 3)
    assert bad == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)


@pytest.mark.requirement("SRS-081", "SRS-007")
def test_threshold_meets_recall_and_false_flags_when_it_can() -> None:
    clean = list(np.linspace(0.0, 0.3, 40))
    failed = list(np.linspace(0.5, 0.9, 20))
    threshold, rule = choose_threshold(
        clean + failed, [False] * 40 + [True] * 20, [True] * 40 + [False] * 20
    )
    # Recall first: the most the false-flag budget allows (1 of the 40 clean flagged).
    assert threshold == pytest.approx(clean[38]) and "95th percentile of clean" in rule
    assert sum(c > threshold for c in clean) == 1 and all(f > threshold for f in failed)
    # Members that never disagree on clean studies (a smoke build): still a valid threshold.
    zero, _ = choose_threshold([0.0] * 4 + [0.4], [False] * 4 + [True], [True] * 4 + [False])
    assert 0.0 < zero < 0.4
    overlapping, rule = choose_threshold(
        clean + [0.1] * 5 + failed, [False] * 40 + [True] * 25, [True] * 40 + [False] * 25
    )
    assert overlapping < 0.1 and "recall first" in rule


@pytest.mark.requirement("SRS-081", "SRS-007")
def test_temperature_scaling_fixes_overconfidence_without_moving_the_cut() -> None:
    rng = np.random.default_rng(0)
    truth_p = rng.uniform(0.0, 1.0, 200_000)
    label = rng.uniform(0.0, 1.0, truth_p.size) < truth_p
    logit = np.log(truth_p) - np.log1p(-truth_p)
    overconfident = 1.0 / (1.0 + np.exp(-3.0 * logit))
    temperature = fit_temperature(overconfident, label)
    assert temperature == pytest.approx(3.0, rel=0.05)
    before, _ = reliability(overconfident, label)
    after, bins = reliability(temperature_scaled(overconfident, temperature), label)
    assert before > 0.05 and after < 0.01
    assert sum(b.voxels for b in bins) == truth_p.size
    scaled = temperature_scaled(np.array([0.2, 0.5, 0.8], dtype=np.float32), temperature)
    assert scaled[0] < 0.5 and scaled[2] > 0.5


@pytest.mark.requirement("SRS-081", "SRS-007")
def test_calibration_region_is_within_3_mm_of_vessels() -> None:
    truth = np.zeros((1, 1, 40), dtype=bool)
    truth[0, 0, 20] = True
    region = near_vessel_region(truth, np.zeros_like(truth), (1.0, 1.0, 0.5))
    assert region.sum() == 13  # 6 voxels of 0.5 mm on each side, and the vessel


@pytest.mark.requirement("SRS-081", "SRS-007")
def test_a_study_without_vessels_gets_the_top_score() -> None:
    agreeing_on_nothing = np.zeros((3, 8, 8, 8), dtype=np.float32)
    assert study_score("member_disagreement", agreeing_on_nothing, 0.0, 0.03) == NO_VESSEL_SCORE
    vessels = agreeing_on_nothing.copy()
    vessels[:, 2:6, 2:6, 2:6] = 0.9  # 64 voxels of 1 mm^3 each: 0.064 ml
    assert study_score("member_disagreement", vessels, 0.064, 0.03) == pytest.approx(0.0)
    assert study_score("member_disagreement", vessels, 0.029, 0.03) == NO_VESSEL_SCORE
    with pytest.raises(ValueError, match="unknown study score"):
        study_score("astrology", vessels, 0.064, 0.03)


@pytest.mark.requirement("SRS-081", "SRS-007")
def test_a_mask_of_islands_scores_higher_than_one_tree_the_members_agree_on() -> None:
    tree = np.zeros((3, 16, 16, 16), dtype=np.float32)
    tree[:, 8, 8, 1:15] = 0.95  # a vessel along x with a branch along y, one component
    tree[:, 8, 2:8, 8] = 0.95
    islands = np.zeros_like(tree)
    for corner in range(0, 16, 4):  # four separate 2x2x2 blobs, as confident
        islands[:, corner : corner + 2, corner : corner + 2, corner : corner + 2] = 0.95
    assert mask_fragmentation(tree) == 0.0
    assert mask_fragmentation(islands) == pytest.approx(0.75)  # 3 of 4 equal blobs
    assert mask_fragmentation(np.zeros_like(tree)) == 0.0
    # Voxels only one member of three calls vessel are outside the mean mask.
    lone = tree.copy()
    lone[0, 0, 0, 0] = 0.95
    assert mask_fragmentation(lone) == 0.0
    assert vessel_entropy(tree) == pytest.approx(vessel_entropy(islands))
    assert fragmented_vessel_entropy(islands) == pytest.approx(
        vessel_entropy(islands) + FRAGMENTATION_WEIGHT * 0.75
    )
    assert fragmented_vessel_entropy(tree) == pytest.approx(vessel_entropy(tree))
