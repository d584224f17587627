"""The ensemble manifest (``models/ensemble/manifest.json``): schema and validation.

The manifest is the single source of truth about the shipped models: which ONNX files make
up the ensemble and their SHA-256 (checked before any file is loaded), how each member
expects its input (spacing, patch, normalisation), where the models came from
(provenance: seeds, data digests, code commit, library versions), how good they are on the
locked test split, the calibrated out-of-distribution threshold and the reference feature
profile that drift monitoring compares live studies against.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
ModalityCode = Literal["CT", "MR"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalisation(_Strict):
    """Modality-aware normalisation (``models.normalisation``), recorded per member.

    CT: ``clip((HU - ct_centre_hu) / ct_width_hu, *ct_clip)``. MR:
    ``clip(mr_log2_scale * log2(x / tissue level), *mr_clip)``, the tissue level being
    the median of the body voxels (air left out). Neither depends on how much of the box
    is air, fat or vessel, which the robust z-score of ensemble 1.x did.
    """

    method: Literal["modality_window"] = "modality_window"
    ct_centre_hu: float = 40.0
    ct_width_hu: float = Field(default=400.0, gt=0.0)
    ct_clip: tuple[float, float] = (-2.6, 5.0)
    mr_log2_scale: float = Field(default=0.5, gt=0.0)
    mr_clip: tuple[float, float] = (-1.5, 2.5)


class SegmentationMetrics(_Strict):
    """Means over the locked test cases of one modality (MetricsReloaded definitions)."""

    cases: int = Field(ge=1)
    dice: float = Field(ge=0.0, le=1.0)
    cldice: float = Field(ge=0.0, le=1.0)
    hd95_mm: float = Field(ge=0.0)


class Member(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    file: str
    sha256: str
    size_bytes: int = Field(gt=0)
    architecture: Literal["UNet", "SegResNet"]
    architecture_params: dict[str, int | float | str | list[int]]
    seed: int
    input_spacing_mm: tuple[float, float, float] = Field(description="(dz, dy, dx)")
    patch_size: tuple[int, int, int] = Field(description="(z, y, x) voxels")
    normalisation: Normalisation
    output_classes: tuple[str, ...] = ("background", "vessel")
    output: Literal["logits"] = "logits"
    onnx_opset: int = Field(ge=17)
    weight: float = Field(default=1.0, gt=0.0)
    training_iterations: int = Field(ge=1)
    metrics: dict[str, SegmentationMetrics] = Field(description="by modality (CT, MR)")
    cpu_ms_per_window: float | None = Field(
        default=None, description="median ONNX Runtime CPU time of one window, build machine"
    )
    modalities: tuple[ModalityCode, ...] = Field(
        default=("CT", "MR"), min_length=1, description="the studies the appliance runs it on"
    )
    training_modalities: tuple[ModalityCode, ...] = Field(
        default=("CT", "MR"), min_length=1, description="the training studies it learnt from"
    )

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("sha256 must be 64 lowercase hex digits")
        return value

    @field_validator("file")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        if "/" in value or "\\" in value or value.startswith(".") or not value.endswith(".onnx"):
            raise ValueError(
                f"member file must be a plain *.onnx name in the model folder: {value!r}"
            )
        return value


class DatasetVersion(_Strict):
    """One dataset a build used, by content hash (``models.builder.datasets.validation``)."""

    role: Literal[
        "synthetic-train", "synthetic-val", "synthetic-test", "site-train", "site-test", "train"
    ] = Field(description="train: what the members were trained on (site and synthetic mixed)")
    source: str = Field(description="generator version, or the site dataset's folder name")
    content_sha256: str
    cases: int = Field(ge=0)
    format: str | None = Field(default=None, description="site datasets: nnunet or dicom-seg")


class TrackingRecord(_Strict):
    """Where the build's MLflow run lives (``models.builder.tracking``)."""

    tracking_uri: str = Field(description="without credentials")
    experiment_id: str
    run_id: str
    registered_model: str | None = None


class Provenance(_Strict):
    generator_version: str
    train_split_sha256: str
    val_split_sha256: str
    code_commit: str
    created: str = Field(description="ISO 8601 UTC, from SOURCE_DATE_EPOCH when set")
    libraries: dict[str, str]
    deterministic: bool = True
    determinism_tolerance: str = Field(
        description="what 'same seed, same data, same result' guarantees, in words"
    )
    kernel_pins: dict[str, str] = Field(default_factory=dict)
    cpu_capability: str = ""
    evaluation_commit: str | None = Field(
        default=None,
        description="the code the metrics were measured with, when the members were "
        "measured again after training (python -m models.builder --reevaluate)",
    )
    # Issue 17 (site data, experiment tracking); optional, so older manifests stay valid.
    datasets: tuple[DatasetVersion, ...] = Field(
        default=(), description="content hash of every dataset the build used"
    )
    mlflow_runs: tuple[TrackingRecord, ...] = Field(default=(), description="MLflow run(s)")
    fine_tuned_from: dict[str, str] = Field(
        default_factory=dict,
        description="member -> SHA-256 of the builder checkpoint it was fine-tuned from "
        "(the checkpoint reproduced the reference member within the parity tolerance)",
    )


class DataLockout(_Strict):
    test_split_sha256: str = Field(description="content SHA-256 of the locked test split")
    test_cases: int = Field(ge=1)
    site_test_sha256: str | None = Field(
        default=None, description="content SHA-256 of the site's locked test cases"
    )
    site_test_cases: int | None = Field(default=None, ge=1)


class LumenGrowth(_Strict):
    """The MR lumen-growth rule's two values (``models.lumen_growth``)."""

    min_probability: float = Field(
        gt=0.0, lt=0.5, description="fused member probability (before temperature scaling)"
    )
    min_contrast_ratio: float = Field(
        gt=0.0, lt=1.0, description="share of the study's lumen contrast above the tissue"
    )


StudyScoreName = Literal[
    "member_disagreement",
    "vessel_mutual_information",
    "vessel_entropy",
    "fragmented_vessel_entropy",
]


class Calibration(_Strict):
    """Study-level uncertainty score and its review-flag (out-of-distribution) threshold.

    ``score`` names a function of ``models.uncertainty.STUDY_SCORES``; a study whose fused
    mask holds less than ``min_vessel_ml`` gets the top score (an angiogram without
    vessels failed). The threshold is set on the validation split and its shift suite
    only (``rule``); ``temperature`` rescales the fused probability's logit (mask
    unchanged).
    """

    score: StudyScoreName = "member_disagreement"
    ood_threshold: float = Field(gt=0.0)
    min_vessel_ml: float = Field(default=0.0, ge=0.0)
    temperature: float = Field(default=1.0, gt=0.0)
    validation_scores: dict[str, float]
    rule: str
    mr_faint_component_ratio: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="MR: mask components whose brightest voxel stands less than this share "
        "of the study's lumen contrast above the tissue are dropped "
        "(models.faint_components); None: no such rule",
    )
    mr_lumen_growth: LumenGrowth | None = Field(
        default=None,
        description="MR: the mask grows into bright voxels the members half-believe, "
        "joined to it (models.lumen_growth); None: no such rule",
    )

    @model_validator(mode="after")
    def _growth_cannot_undo_the_faint_rule(self) -> Calibration:
        growth, faint = self.mr_lumen_growth, self.mr_faint_component_ratio
        if growth is not None and faint is not None and growth.min_contrast_ratio <= faint:
            raise ValueError(
                f"lumen growth's contrast ratio {growth.min_contrast_ratio} must exceed the "
                f"faint-component ratio {faint}, or it would grow back what that rule dropped"
            )
        return self


class ShiftResult(_Strict):
    """The ensemble on one shift family at one severity (locked test seeds)."""

    modality: str
    family: str
    severity: Literal["none", "mild", "moderate", "severe"]
    cases: int = Field(ge=1)
    dice: float = Field(ge=0.0, le=1.0)
    dice_min: float = Field(ge=0.0, le=1.0)
    cldice: float = Field(ge=0.0, le=1.0)
    hd95_mm: float = Field(ge=0.0, description="mean; an empty mask counts as the FOV diagonal")
    failures: int = Field(ge=0, description="studies with Dice < 0.5")
    flagged: int = Field(ge=0)
    failures_flagged: int = Field(ge=0)


class ScoreEvaluation(_Strict):
    """A candidate study score as a failure detector on one set of studies."""

    score: str
    studies: int = Field(ge=1)
    failures: int = Field(ge=0)
    auroc: float | None = Field(description="None when the set holds one class only")
    aurc: float = Field(ge=0.0, description="area under the risk-coverage curve, risk 1-Dice")


class SeverityDetection(_Strict):
    """The flag at one shift severity ("none" = clean studies), test seeds."""

    modality: ModalityCode | None = Field(default=None, description="None: both modalities")
    severity: Literal["none", "mild", "moderate", "severe"]
    studies: int = Field(ge=1)
    failures: int = Field(ge=0)
    recall: float | None = Field(description="flagged failures / failures")
    flag_rate: float = Field(ge=0.0, le=1.0, description="flagged / studies")
    false_flag_rate: float = Field(ge=0.0, le=1.0, description="flagged successes / successes")


class FailureDetection(_Strict):
    """The review flag measured as a detector of failed segmentations (Dice < 0.5).

    Threshold chosen on validation (clean + shift suite); everything else measured on
    the locked test seeds (clean + shift suite).
    """

    score: StudyScoreName
    threshold: float
    studies: int = Field(ge=1)
    failures: int = Field(ge=0)
    recall: float | None = Field(description="flagged failures / failures")
    false_flag_rate_clean: float = Field(
        ge=0.0,
        le=1.0,
        description="flagged share of the clean test studies that did not fail (Dice >= 0.5)",
    )
    auroc: float | None
    aurc: float = Field(ge=0.0)
    by_severity: tuple[SeverityDetection, ...]
    # The threshold is one for both modalities; their false-flag rates differ (3.1.1).
    by_modality: tuple[SeverityDetection, ...] = ()
    candidates_validation: tuple[ScoreEvaluation, ...]
    candidates_test: tuple[ScoreEvaluation, ...]
    risk_coverage: tuple[tuple[float, float], ...] = Field(
        description="(coverage, risk) along the test studies sorted by score"
    )


class ReliabilityBin(_Strict):
    lower: float
    upper: float
    confidence: float
    accuracy: float
    voxels: int = Field(ge=0)


class VoxelCalibration(_Strict):
    """Voxel calibration of the fused probability near vessels, before/after temperature."""

    region: str
    temperature: float = Field(gt=0.0)
    validation_ece_before: float = Field(ge=0.0)
    validation_ece_after: float = Field(ge=0.0)
    test_ece_before: float = Field(ge=0.0)
    test_ece_after: float = Field(ge=0.0)
    reliability_before: tuple[ReliabilityBin, ...]
    reliability_after: tuple[ReliabilityBin, ...]


class FeatureReference(_Strict):
    mean: float
    std: float
    p05: float
    p50: float
    p95: float


class ReferenceStudy(_Strict):
    """One validation study's drift features: the reference drift reports compare against."""

    modality: str
    features: dict[str, float]


class EnsembleManifest(_Strict):
    schema_version: Literal["2.0"] = "2.0"
    name: str = Field(max_length=64)
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    fusion: Literal["mean", "majority", "weighted"] = "mean"
    probability_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    members: tuple[Member, ...] = Field(min_length=1)
    ensemble_metrics: dict[str, SegmentationMetrics]
    data: DataLockout
    provenance: Provenance
    calibration: Calibration
    reference_profile: dict[str, FeatureReference]
    reference_features: tuple[ReferenceStudy, ...] = Field(
        default=(), description="per-study features of the validation split, by modality"
    )
    robustness: tuple[ShiftResult, ...] = Field(
        default=(), description="the shift suite on the locked test seeds"
    )
    failure_detection: FailureDetection | None = None
    voxel_calibration: VoxelCalibration | None = None
    validation_metrics: dict[str, SegmentationMetrics] = Field(
        default_factory=dict, description="the clean validation split, by modality"
    )
    site_test_metrics: dict[str, SegmentationMetrics] = Field(
        default_factory=dict, description="the site's locked test cases, by modality"
    )

    @model_validator(mode="after")
    def _unique_members(self) -> EnsembleManifest:
        for attribute in ("name", "file"):
            values = [getattr(member, attribute) for member in self.members]
            if len(set(values)) != len(values):
                raise ValueError(f"member {attribute}s must be unique, got {values}")
        return self

    def members_for(self, modality: str) -> tuple[Member, ...]:
        """The members run on ``modality`` studies, in manifest order, or ``ValueError``."""
        chosen = tuple(m for m in self.members if modality in m.modalities)
        if not chosen:
            raise ValueError(
                f"{self.name} {self.version} has no member for {modality} studies "
                f"(its members run on {sorted({x for m in self.members for x in m.modalities})})"
            )
        return chosen


MANIFEST_NAME = "manifest.json"


def read_manifest(model_dir: Path) -> EnsembleManifest:
    """Parse and validate ``model_dir/manifest.json`` with a message naming the file."""
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"model manifest not found: {path}")
    return EnsembleManifest.model_validate_json(path.read_text())
