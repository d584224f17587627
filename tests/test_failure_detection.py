"""Failure detection's figures (models/builder/evaluate.failure_detection) on known outcomes."""

from __future__ import annotations

import pytest

from models.builder.evaluate import StudyOutcome, failure_detection
from models.uncertainty import STUDY_SCORES


def _outcome(
    name: str, family: str, dice: float, score: float, modality: str = "MR"
) -> StudyOutcome:
    return StudyOutcome(
        modality=modality,
        dice=dice,
        cldice=dice,
        hd95_mm=1.0,
        name=name,
        family=family,
        severity="none" if family == "clean" else "severe",
        scores=dict.fromkeys(STUDY_SCORES, score),
    )


@pytest.mark.requirement("SRS-081")
def test_a_flagged_clean_failure_is_not_a_false_flag() -> None:
    validation = [_outcome(f"v{i}", "clean", 0.9, 0.1 + 0.01 * i) for i in range(10)]
    validation += [_outcome(f"f{i}", "noise", 0.2, 0.8 + 0.01 * i) for i in range(5)]
    test = [
        _outcome("ok-1", "clean", 0.9, 0.1),
        _outcome("ok-2", "clean", 0.92, 0.15),
        _outcome("ok-flagged", "clean", 0.88, 0.9),  # a success flagged: one false flag
        _outcome("failed", "clean", 0.2, 0.95),  # a clean failure, rightly flagged
        _outcome("shift-failed", "noise", 0.1, 0.9),
    ]
    detection, _ = failure_detection(validation, test)
    assert detection.threshold == pytest.approx(0.19)  # the clean 95th percentile: recall first
    assert detection.recall == 1.0
    assert detection.false_flag_rate_clean == pytest.approx(1 / 3, abs=1e-4)


@pytest.mark.requirement("SRS-081")
def test_false_flags_are_reported_per_modality_beside_the_pooled_rate() -> None:
    """One threshold serves both modalities; the pooled rate would hide one that scores
    higher (3.1.0: no CT and 23 of 200 MR clean validation successes flagged)."""
    validation = [_outcome(f"v{i}", "clean", 0.9, 0.1 + 0.01 * i) for i in range(10)]
    test = [_outcome(f"ct-{i}", "clean", 0.9, 0.1, "CT") for i in range(3)]
    test += [_outcome("mr-ok", "clean", 0.9, 0.1), _outcome("mr-flagged", "clean", 0.9, 0.9)]
    test.append(_outcome("mr-shift-failed", "noise", 0.1, 0.9))
    detection, _ = failure_detection(validation, test)
    rows = detection.by_severity + detection.by_modality
    clean = {row.modality: row for row in rows if row.severity == "none"}
    assert clean[None].false_flag_rate == pytest.approx(1 / 5)
    assert (clean["CT"].studies, clean["CT"].false_flag_rate) == (3, 0.0)
    assert (clean["MR"].studies, clean["MR"].false_flag_rate) == (2, 0.5)
    severe = [row for row in detection.by_modality if row.severity == "severe"]
    assert [(row.modality, row.recall) for row in severe] == [("MR", 1.0)]  # no CT shifts
