"""Drift monitoring: a PHI-free feature store and Evidently reports against a reference.

Every processed series adds one row to an append-only JSON-lines store (default
``var/drift/features.jsonl``): UTC timestamp, correlation id, modality, model version, a
hashed series key and the features of ``models.features`` (intensity statistics, spacing,
predicted vessel fraction, uncertainty score). No patient name/ID, no UIDs in clear.

The reference is, by default, the model manifest's ``reference_features``: the features of
every validation study, by modality, so a CT stream is compared with CT validation
studies. Older manifests hold only the pooled ``reference_profile``, summary statistics
(mean, std, p05, p50, p95 per feature over the validation split), so a reference *sample*
is synthesised deterministically by quantile interpolation: the quantile function is taken
as piecewise linear through (0.05, p05), (0.5, p50), (0.95, p95), extended to u = 0 and u
= 1 with the slopes of the adjacent segments, and evaluated on the grid u_i = (i + 0.5) /
n. No random numbers: the same manifest always gives the same reference, and its
p05/p50/p95 are those of the manifest. n is the number of validation studies the profile
summarises (one per ``calibration.validation_scores`` entry): a larger synthetic sample
would make the two-sample tests treat a profile of a handful of studies as an exactly
known distribution, and flag ordinary studies (e.g. a slice spacing just outside the few
validation values) as drift.

Intensity statistics are modality-specific (CT in HU, MR in arbitrary units), so compare
one modality at a time (``--modality``): against the manifest's validation studies of that
modality, or against a reference feature store (e.g. the site's accepted baseline period),
both sides filtered to that modality.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, ValidationError

from models.features import FEATURE_NAMES
from models.manifest import EnsembleManifest, FeatureReference

os.environ.setdefault("DO_NOT_TRACK", "1")  # an air-gapped appliance: no usage pings

DEFAULT_STORE = Path("var/drift/features.jsonl")
FALLBACK_REFERENCE_SIZE = 8
DEFAULT_DRIFT_SHARE = 0.5  # dataset drift when at least half the features drift
MIN_CURRENT_ROWS = 5


class FeatureRow(BaseModel):
    timestamp: str = Field(description="ISO 8601 UTC")
    correlation_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    series_key: str = Field(description="SHA-256 of the series instance UID, 16 hex digits")
    modality: str = ""
    model_version: str = ""
    features: dict[str, float]


def series_key(series_instance_uid: str) -> str:
    return hashlib.sha256(series_instance_uid.encode()).hexdigest()[:16]


def feature_row(
    correlation_id: str,
    series_instance_uid: str,
    features: Mapping[str, float],
    modality: str = "",
    model_version: str = "",
    timestamp: datetime | None = None,
) -> FeatureRow:
    missing = [name for name in FEATURE_NAMES if name not in features]
    if missing:
        raise ValueError(f"feature row lacks {missing}")
    return FeatureRow(
        timestamp=(timestamp or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        correlation_id=correlation_id,
        series_key=series_key(series_instance_uid),
        modality=modality,
        model_version=model_version,
        features={name: float(features[name]) for name in FEATURE_NAMES},
    )


class FeatureStore:
    """Append-only JSON lines; one ``write`` per row (O_APPEND), fsynced when asked."""

    def __init__(self, path: Path = DEFAULT_STORE, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.skipped_lines = 0

    def append(self, row: FeatureRow) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (row.model_dump_json() + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def rows(self, modality: str | None = None, last: int | None = None) -> list[FeatureRow]:
        """Stored rows in order, optionally one modality and only the last ``last``.

        A line that does not parse (a write torn by a crash) is skipped and counted in
        ``skipped_lines``; it never hides the rows around it.
        """
        rows: list[FeatureRow] = []
        self.skipped_lines = 0
        if not self.path.exists():
            return rows
        with self.path.open() as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    row = FeatureRow.model_validate_json(line)
                except ValidationError:
                    self.skipped_lines += 1
                    continue
                if modality is None or row.modality.upper() == modality.upper():
                    rows.append(row)
        return rows[-last:] if last else rows


def frame(rows: Iterable[FeatureRow]) -> pd.DataFrame:
    return pd.DataFrame(
        [[row.features[name] for name in FEATURE_NAMES] for row in rows],
        columns=list(FEATURE_NAMES),
        dtype=float,
    )


def quantile_function(reference: FeatureReference) -> tuple[np.ndarray, np.ndarray]:
    """Knots (u, value) of the piecewise-linear quantile function described above."""
    low = reference.p05 - (reference.p50 - reference.p05) * (0.05 / 0.45)
    high = reference.p95 + (reference.p95 - reference.p50) * (0.05 / 0.45)
    u = np.array([0.0, 0.05, 0.5, 0.95, 1.0])
    return u, np.array([low, reference.p05, reference.p50, reference.p95, high])


def reference_sample(profile: Mapping[str, FeatureReference], size: int) -> pd.DataFrame:
    """A deterministic reference dataset of ``size`` rows with the profile's quantiles."""
    if size < 2:
        raise ValueError(f"a reference sample needs at least 2 rows, got {size}")
    missing = [name for name in FEATURE_NAMES if name not in profile]
    if missing:
        raise ValueError(f"reference profile lacks {missing}")
    grid = (np.arange(size) + 0.5) / size
    columns = {}
    for name in FEATURE_NAMES:
        u, values = quantile_function(profile[name])
        columns[name] = np.interp(grid, u, values)
    return pd.DataFrame(columns, columns=list(FEATURE_NAMES))


def manifest_reference(manifest: EnsembleManifest, modality: str | None = None) -> pd.DataFrame:
    """The manifest's reference: its validation studies' features, of ``modality`` if given.

    Manifests that record only the pooled ``reference_profile`` (no
    ``reference_features``) get the deterministic synthetic sample described above.
    """
    if manifest.reference_features:
        wanted = modality.upper() if modality else None
        rows = [
            study.features
            for study in manifest.reference_features
            if wanted is None or study.modality.upper() == wanted
        ]
        if len(rows) < 2:
            raise ValueError(f"the manifest holds {len(rows)} reference studies of {modality}")
        return pd.DataFrame(rows, columns=list(FEATURE_NAMES))
    size = len(manifest.calibration.validation_scores) or FALLBACK_REFERENCE_SIZE
    return reference_sample(manifest.reference_profile, max(size, 2))


@dataclass
class DriftResult:
    drift_share: float
    drifted_columns: int
    dataset_drift: bool
    threshold: float
    current_rows: int
    reference_rows: int
    reference: str
    scores: dict[str, float] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)  # scores are p-values for K-S
    html: Path | None = None
    json: Path | None = None

    def summary(self) -> dict[str, object]:
        return {
            "drift_share": self.drift_share,
            "drifted_columns": self.drifted_columns,
            "columns": len(FEATURE_NAMES),
            "dataset_drift": self.dataset_drift,
            "drift_share_threshold": self.threshold,
            "current_rows": self.current_rows,
            "reference_rows": self.reference_rows,
            "reference": self.reference,
            "scores": self.scores,
            "methods": self.methods,
            "html": str(self.html) if self.html else None,
            "json": str(self.json) if self.json else None,
        }


def drift_report(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    out_dir: Path | None = None,
    threshold: float = DEFAULT_DRIFT_SHARE,
    reference_name: str = "manifest reference_profile",
) -> DriftResult:
    """Evidently DataDriftPreset over the feature columns; HTML + JSON into ``out_dir``.

    Evidently picks the test per column (Kolmogorov-Smirnov at p < 0.05 for numeric
    columns with at most 1000 rows); a column drifts when its test says so, and the
    dataset drifts when the share of drifted columns reaches ``threshold``.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if len(current) < MIN_CURRENT_ROWS:
        raise ValueError(
            f"drift needs at least {MIN_CURRENT_ROWS} current studies, got {len(current)}"
        )
    definition = DataDefinition(numerical_columns=list(FEATURE_NAMES))
    snapshot = Report([DataDriftPreset(drift_share=threshold)]).run(
        current_data=Dataset.from_pandas(current[list(FEATURE_NAMES)], data_definition=definition),
        reference_data=Dataset.from_pandas(
            reference[list(FEATURE_NAMES)], data_definition=definition
        ),
    )
    result = DriftResult(
        drift_share=0.0,
        drifted_columns=0,
        dataset_drift=False,
        threshold=threshold,
        current_rows=len(current),
        reference_rows=len(reference),
        reference=reference_name,
    )
    for metric in snapshot.dict()["metrics"]:
        config, value = metric["config"], metric["value"]
        if config["type"].endswith(":DriftedColumnsCount"):
            result.drifted_columns = int(value["count"])
            result.drift_share = float(value["share"])
        elif config["type"].endswith(":ValueDrift"):
            result.scores[config["column"]] = float(value)
            result.methods[config["column"]] = str(config.get("method", ""))
    result.dataset_drift = result.drift_share >= threshold
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        result.html = out_dir / f"drift-{stamp}.html"
        result.json = out_dir / f"drift-{stamp}.json"
        snapshot.save_html(str(result.html))
        evidently_json = json.loads(snapshot.json())
        result.json.write_text(
            json.dumps({"summary": result.summary(), "evidently": evidently_json}, indent=2)
        )
    return result
