"""``report.json``: what one run did, for the site, the service and the audit log.

Contains no patient identifiers: studies and series are named by their UIDs only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class SkippedInput(BaseModel):
    path: str
    reason: str


class WindowCount(BaseModel):
    run: int
    skipped: int = Field(description="windows the lumen screen skipped (models/screen.py)")


class SeriesOutcome(BaseModel):
    """One processed (or failed) series."""

    study_instance_uid: str
    series_instance_uid: str
    selection_name: str = ""
    modality: str = ""
    shape: tuple[int, int, int] | None = None
    spacing_mm: tuple[float, float, float] | None = None
    status: Literal["done", "failed"]
    error: str | None = None
    error_reason: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict, description="kind -> file path")
    vessel_volume_ml: float | None = None
    uncertainty_score: float | None = None
    ood_threshold: float | None = None
    out_of_distribution: bool | None = None
    features: dict[str, float] = Field(
        default_factory=dict, description="drift features (models/features.py), no PHI"
    )
    windows: dict[str, WindowCount] = Field(
        default_factory=dict, description="member name -> sliding windows run and skipped"
    )
    faint_components_dropped: int | None = Field(
        default=None,
        description="MR mask components dropped as fainter than the lumens "
        "(models/faint_components.py)",
    )
    lumen_voxels_grown: int | None = Field(
        default=None,
        description="MR voxels added to the mask as bright lumen joined to it "
        "(models/lumen_growth.py)",
    )


class ModelSummary(BaseModel):
    name: str
    version: str
    providers: list[str]
    members: dict[str, str] = Field(description="member name -> SHA-256 (verified)")
    mlflow_runs: list[str] = Field(
        default_factory=list, description="MLflow run ids that built the members (manifest)"
    )


class RunReport(BaseModel):
    correlation_id: str
    status: Literal["done", "partial", "failed"]
    input_path: str
    input_kind: Literal["dicom", "nifti"]
    started_at: str
    finished_at: str
    timings_s: dict[str, float] = Field(description="seconds per stage, summed over series")
    model: ModelSummary
    series: list[SeriesOutcome]
    skipped_inputs: list[SkippedInput] = Field(default_factory=list)
    error: str | None = None


@dataclass
class RunRecorder:
    """Per-run mutable state shared by the operators of one run (never global)."""

    correlation_id: str
    input_path: Path
    output_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    series: list[SeriesOutcome] = field(default_factory=list)
    skipped: list[SkippedInput] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add_time(name, time.perf_counter() - started)

    def add_time(self, name: str, seconds: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + seconds

    def outcome(self, series_instance_uid: str) -> SeriesOutcome:
        for outcome in self.series:
            if outcome.series_instance_uid == series_instance_uid:
                return outcome
        raise KeyError(series_instance_uid)
