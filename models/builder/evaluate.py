"""Evaluate the exported ensemble: clean splits, the shift suite, failure detection, calibration.

Everything here runs the ONNX members through ``models.inference`` (the appliance's own
code path). The flag threshold and the temperature are fitted on validation studies
(clean + the shift suite of some validation seeds); the locked test split and the shift
suite of the test seeds are only measured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import get_args

import numpy as np
import onnxruntime as ort

from models.builder.config import BuildRecipe, MemberRecipe
from models.builder.reliability import (
    aurc,
    auroc,
    choose_threshold,
    fit_temperature,
    near_vessel_region,
    reliability,
    risk_coverage,
)
from models.features import study_features
from models.inference import SlidingWindowSettings, member_probability
from models.lumen_growth import MrMaskRules
from models.manifest import (
    FailureDetection,
    ModalityCode,
    ScoreEvaluation,
    SegmentationMetrics,
    SeverityDetection,
    ShiftResult,
    VoxelCalibration,
)
from models.metrics import cldice, dice, hd95
from models.uncertainty import STUDY_SCORES, study_score, temperature_scaled
from synthetic.case import Modality
from synthetic.shifts import shifted_case, variants
from synthetic.splits import LoadedCase

log = logging.getLogger(__name__)
# As the appliance runs by default (map_app.config.AppConfig): overlap 0.25, lumen screen.
EVALUATION = SlidingWindowSettings(overlap=0.25, batch_size=2, screen=True)
FAILURE_DICE = 0.5
# Less than ~1 cm of a 2 mm vessel: an angiogram in which the ensemble finds no more
# than this has failed (models.uncertainty.study_score).
MIN_VESSEL_ML = 0.03
CALIBRATION_REGION = "voxels within 3 mm of a true or predicted vessel"


@dataclass
class Overlap:
    """How a vessel mask matches the truth (HD95 of an empty mask: the FOV diagonal)."""

    modality: str
    dice: float
    cldice: float
    hd95_mm: float


@dataclass
class StudyOutcome(Overlap):
    name: str
    family: str  # "clean" or a shift family
    severity: str  # "none" for clean studies
    scores: dict[str, float]
    features: dict[str, float] | None = None  # drift features of clean studies

    @property
    def failed(self) -> bool:
        return self.dice < FAILURE_DICE


@dataclass
class CalibrationVoxels:
    probability: list[np.ndarray] = field(default_factory=list)
    label: list[np.ndarray] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.probability), np.concatenate(self.label)


def serving(recipes: Sequence[MemberRecipe], modality: str) -> list[int]:
    """Indices of the recipes' members run on ``modality`` studies."""
    chosen = [i for i, recipe in enumerate(recipes) if modality in recipe.modalities]
    if not chosen:
        raise ValueError(f"no member of the recipe runs on {modality} studies")
    return chosen


def predict_members(
    case: LoadedCase, sessions: list[ort.InferenceSession], recipes: tuple[MemberRecipe, ...]
) -> np.ndarray:
    """(members, z, y, x) vessel probabilities of ``case`` on its own grid.

    Only the members run on the case's modality, in recipe order (``serving``).
    """
    stack = []
    for index in serving(recipes, case.modality.value):
        session, recipe = sessions[index], recipes[index]

        def predict(batch: np.ndarray, s: ort.InferenceSession = session) -> np.ndarray:
            return np.asarray(s.run(None, {"image": batch})[0])

        stack.append(
            member_probability(
                predict,
                case.image,
                case.geometry.spacing,
                recipe.input_spacing_mm,
                recipe.patch_size,
                recipe.normalisation,
                EVALUATION,
                modality=case.modality.value,
            )
        )
    return np.stack(stack)


def _fov_diagonal(case: LoadedCase) -> float:
    return float(np.linalg.norm(np.asarray(case.image.shape) * np.asarray(case.geometry.spacing)))


def overlap(case: LoadedCase, predicted: np.ndarray) -> Overlap:
    """Dice, clDice and HD95 of the ``predicted`` vessel mask against the case's mask."""
    distance = hd95(predicted, case.mask, case.geometry.spacing)
    return Overlap(
        modality=case.modality.value,
        dice=dice(predicted, case.mask),
        cldice=cldice(predicted, case.mask),
        hd95_mm=min(distance, _fov_diagonal(case)),
    )


def evaluate_case(
    case: LoadedCase,
    members: np.ndarray,
    family: str,
    severity: str,
    rules: MrMaskRules,
    calibration: CalibrationVoxels | None = None,
) -> StudyOutcome:
    """One study as the appliance answers it: fused mask, the MR mask rules, scores."""
    fused = members.mean(axis=0)
    predicted, _, _ = rules.apply(fused >= 0.5, fused, case.image, case.modality.value)
    vessel_ml = float(np.count_nonzero(predicted)) * float(np.prod(case.geometry.spacing)) / 1000.0
    if calibration is not None:
        region = near_vessel_region(case.mask, predicted, case.geometry.spacing)
        calibration.probability.append(fused[region].astype(np.float32))
        calibration.label.append(case.mask[region].astype(bool))
    features = None
    if family == "clean":  # the drift reference; its uncertainty_score is set by the caller
        features = study_features(case.image, case.geometry.spacing, fused, 0.0)
    return StudyOutcome(
        **vars(overlap(case, predicted)),
        name=case.name,
        family=family,
        severity=severity,
        scores={
            name: round(study_score(name, members, vessel_ml, MIN_VESSEL_ML), 6)
            for name in STUDY_SCORES
        },
        features=features,
    )


def shift_suite_cases(
    seeds: Iterable[int], families: tuple[str, ...] | None, severities: tuple[str, ...]
) -> Iterator[tuple[LoadedCase, str, str]]:
    """The shift variants of ``seeds`` for both modalities (``families`` None: all)."""
    for seed in seeds:
        for modality in Modality:
            for family, severity in variants(modality):
                if (families is not None and family not in families) or (
                    severity not in severities
                ):
                    continue
                case = shifted_case(seed, modality, family, severity)
                yield (
                    LoadedCase(
                        f"{modality.value.lower()}-{seed:05d}-{family}-{severity}",
                        modality,
                        case.image,
                        case.mask,
                        case.geometry,
                    ),
                    family,
                    severity,
                )


def run_studies(
    cases: Iterable[tuple[LoadedCase, str, str]],
    sessions: list[ort.InferenceSession],
    recipes: tuple[MemberRecipe, ...],
    rules: MrMaskRules,
    calibration: CalibrationVoxels | None = None,
) -> list[StudyOutcome]:
    outcomes = []
    started = time.monotonic()
    for case, family, severity in cases:
        members = predict_members(case, sessions, recipes)
        voxels = calibration if family == "clean" else None
        outcomes.append(evaluate_case(case, members, family, severity, rules, voxels))
        if len(outcomes) % 25 == 0:
            log.info("%d studies evaluated, %.0f s", len(outcomes), time.monotonic() - started)
    return outcomes


def clean(cases: list[LoadedCase]) -> list[tuple[LoadedCase, str, str]]:
    return [(case, "clean", "none") for case in cases]


def segmentation_metrics(outcomes: Sequence[Overlap]) -> dict[str, SegmentationMetrics]:
    by_modality: dict[str, list[Overlap]] = {}
    for outcome in outcomes:
        by_modality.setdefault(outcome.modality, []).append(outcome)
    return {
        modality: SegmentationMetrics(
            cases=len(rows),
            dice=round(float(np.mean([r.dice for r in rows])), 4),
            cldice=round(float(np.mean([r.cldice for r in rows])), 4),
            hd95_mm=round(float(np.mean([r.hd95_mm for r in rows])), 3),
        )
        for modality, rows in sorted(by_modality.items())
    }


def robustness_table(
    outcomes: list[StudyOutcome], score: str, threshold: float
) -> tuple[ShiftResult, ...]:
    groups: dict[tuple[str, str, str], list[StudyOutcome]] = {}
    for outcome in outcomes:
        groups.setdefault((outcome.modality, outcome.family, outcome.severity), []).append(outcome)
    return tuple(
        ShiftResult(
            modality=modality,
            family=family,
            severity=severity,
            cases=len(rows),
            dice=round(float(np.mean([r.dice for r in rows])), 4),
            dice_min=round(float(np.min([r.dice for r in rows])), 4),
            cldice=round(float(np.mean([r.cldice for r in rows])), 4),
            hd95_mm=round(float(np.mean([r.hd95_mm for r in rows])), 3),
            failures=sum(r.failed for r in rows),
            flagged=sum(r.scores[score] > threshold for r in rows),
            failures_flagged=sum(r.failed and r.scores[score] > threshold for r in rows),
        )
        for (modality, family, severity), rows in groups.items()
    )


def _score_evaluations(outcomes: list[StudyOutcome]) -> tuple[ScoreEvaluation, ...]:
    return tuple(
        ScoreEvaluation(
            score=name,
            studies=len(outcomes),
            failures=sum(o.failed for o in outcomes),
            auroc=_rounded(auroc([o.scores[name] for o in outcomes], [o.failed for o in outcomes])),
            aurc=round(
                aurc([o.scores[name] for o in outcomes], [1.0 - o.dice for o in outcomes]), 5
            ),
        )
        for name in STUDY_SCORES
    )


def _by_severity(
    outcomes: list[StudyOutcome],
    score: str,
    threshold: float,
    modality: ModalityCode | None = None,
) -> tuple[SeverityDetection, ...]:
    """One row per severity, over ``modality``'s studies (None: all of them)."""
    rows = []
    for severity in ("none", "mild", "moderate", "severe"):
        mine = [o for o in outcomes if o.severity == severity and modality in (None, o.modality)]
        if not mine:
            continue
        flagged = [o.scores[score] > threshold for o in mine]
        failures = [o.failed for o in mine]
        successes = len(mine) - sum(failures)
        rows.append(
            SeverityDetection(
                modality=modality,
                severity=severity,
                studies=len(mine),
                failures=sum(failures),
                recall=(
                    round(
                        sum(f and g for f, g in zip(failures, flagged, strict=True))
                        / sum(failures),
                        4,
                    )
                    if any(failures)
                    else None
                ),
                flag_rate=round(sum(flagged) / len(mine), 4),
                false_flag_rate=round(
                    sum(g and not f for f, g in zip(failures, flagged, strict=True))
                    / max(successes, 1),
                    4,
                ),
            )
        )
    return tuple(rows)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def failure_detection(
    validation: list[StudyOutcome], test: list[StudyOutcome]
) -> tuple[FailureDetection, str]:
    """Pick the score that best tells failures apart on validation, set its threshold on
    validation, measure it on test. Returns the block and the threshold rule in words.

    The flag's job is to separate failed studies (Dice < 0.5) from the rest, so the score
    with the highest validation AUROC for that wins; the lowest AURC (which ranks every
    study by 1 - Dice, most of them successes) breaks ties, e.g. when validation holds no
    failure. Until 3.1.0 AURC alone chose: on the 852 typical and shifted dev studies it
    preferred ``vessel_entropy`` (0.0653 vs 0.0667) although ``fragmented_vessel_entropy``
    separated the 16 failures better (AUROC 0.989 vs 0.983; recall 16/16 vs fewer at
    <= 5 % false flags).
    """
    on_validation = _score_evaluations(validation)
    best = min(
        on_validation, key=lambda e: (-(e.auroc if e.auroc is not None else 0.0), e.aurc, e.score)
    ).score
    threshold, rule = choose_threshold(
        [o.scores[best] for o in validation],
        [o.failed for o in validation],
        [o.family == "clean" for o in validation],
    )
    failures = [o for o in test if o.failed]
    # A false flag is a flagged success: a clean study that failed is rightly flagged.
    clean_successes = [o for o in test if o.family == "clean" and not o.failed]
    scores = [o.scores[best] for o in test]
    curve = risk_coverage(scores, [1.0 - o.dice for o in test])
    step = max(1, len(curve) // 50)
    block = FailureDetection(
        score=best,
        threshold=round(threshold, 6),
        studies=len(test),
        failures=len(failures),
        recall=(
            round(sum(o.scores[best] > threshold for o in failures) / len(failures), 4)
            if failures
            else None
        ),
        false_flag_rate_clean=round(
            sum(o.scores[best] > threshold for o in clean_successes) / max(len(clean_successes), 1),
            4,
        ),
        auroc=_rounded(auroc(scores, [o.failed for o in test])),
        aurc=round(aurc(scores, [1.0 - o.dice for o in test]), 5),
        by_severity=_by_severity(test, best, threshold),
        by_modality=tuple(
            row
            for modality in get_args(ModalityCode)
            for row in _by_severity(test, best, threshold, modality)
        ),
        candidates_validation=on_validation,
        candidates_test=_score_evaluations(test),
        risk_coverage=tuple(
            (round(c, 4), round(r, 4)) for c, r in curve[step - 1 :: step] + curve[-1:]
        ),
    )
    return block, rule


def voxel_calibration(validation: CalibrationVoxels, test: CalibrationVoxels) -> VoxelCalibration:
    val_p, val_y = validation.arrays()
    test_p, test_y = test.arrays()
    temperature = fit_temperature(val_p, val_y)
    val_before, _ = reliability(val_p, val_y)
    val_after, _ = reliability(temperature_scaled(val_p, temperature), val_y)
    test_before, bins_before = reliability(test_p, test_y)
    test_after, bins_after = reliability(temperature_scaled(test_p, temperature), test_y)
    return VoxelCalibration(
        region=CALIBRATION_REGION,
        temperature=temperature,
        validation_ece_before=round(val_before, 5),
        validation_ece_after=round(val_after, 5),
        test_ece_before=round(test_before, 5),
        test_ece_after=round(test_after, 5),
        reliability_before=bins_before,
        reliability_after=bins_after,
    )


def cpu_ms_per_window(session: ort.InferenceSession, patch: tuple[int, int, int]) -> float:
    """Median of 5 timed single-window runs after one warm-up (build machine, noisy)."""
    window = np.random.default_rng(0).normal(size=(1, 1, *patch)).astype(np.float32)
    session.run(None, {"image": window})
    times = []
    for _ in range(5):
        started = time.perf_counter()
        session.run(None, {"image": window})
        times.append((time.perf_counter() - started) * 1000.0)
    return round(float(np.median(times)), 1)


def shift_suite(recipe: BuildRecipe, split: str) -> Iterator[tuple[LoadedCase, str, str]]:
    seeds = recipe.val_shift_seeds if split == "val" else recipe.test_shift_seeds
    return shift_suite_cases(range(*seeds), recipe.shift_families, recipe.shift_severities)
