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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalisation(_Strict):
    """Robust z-score: ``clip((x - median) / (p75 - p25), low, high) / divisor``.

    Chosen because it maps CT (HU) and MR (arbitrary units) alike: the median and the
    inter-quartile range come from the background tissue that fills most of a study, so
    lumens land at similar normalised values whatever the modality's scale.
    """

    method: Literal["robust_zscore"] = "robust_zscore"
    clip_low: float = -5.0
    clip_high: float = 25.0
    divisor: float = 10.0


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


class DataLockout(_Strict):
    test_split_sha256: str = Field(description="content SHA-256 of the locked test split")
    test_cases: int = Field(ge=1)


class Calibration(_Strict):
    """Study-level uncertainty score and its out-of-distribution threshold.

    ``score`` is the members' disagreement on the vessel mask, 1 - mean pairwise Dice
    (``models.uncertainty.study_uncertainty_score``); the threshold is set on the
    validation split so that in-distribution studies fall below it.
    """

    score: Literal["member_disagreement"] = "member_disagreement"
    ood_threshold: float = Field(gt=0.0)
    validation_scores: dict[str, float]
    rule: str


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
    schema_version: Literal["1.0"] = "1.0"
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

    @model_validator(mode="after")
    def _unique_members(self) -> EnsembleManifest:
        for attribute in ("name", "file"):
            values = [getattr(member, attribute) for member in self.members]
            if len(set(values)) != len(values):
                raise ValueError(f"member {attribute}s must be unique, got {values}")
        return self


MANIFEST_NAME = "manifest.json"


def read_manifest(model_dir: Path) -> EnsembleManifest:
    """Parse and validate ``model_dir/manifest.json`` with a message naming the file."""
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"model manifest not found: {path}")
    return EnsembleManifest.model_validate_json(path.read_text())
