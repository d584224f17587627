"""The drift monitor: ``minivess_drift_share`` from the newest studies, on a timer.

Each answered series leaves a row of drift features in the feature store
(:mod:`service.study_recorder`). Every ``drift_interval_s`` this loop compares the newest
``drift_window`` rows with the reference profile of the loaded ensemble's manifest, as
``python -m service.observability drift --manifest`` does, and sets the gauge to the share
of features that drifted (:func:`service.observability.drift.drift_report`: Evidently,
Kolmogorov-Smirnov per feature). Until the store holds ``MIN_CURRENT_ROWS`` rows the gauge
keeps its start value 0 (nothing measured, nothing drifted). Reading and testing cost a
second or two, off the study path: a busy worker never waits for it.
"""

from __future__ import annotations

import logging

from models.manifest import EnsembleManifest, read_manifest
from service.background import BackgroundLoop
from service.observability.drift import (
    MIN_CURRENT_ROWS,
    FeatureStore,
    drift_report,
    frame,
    manifest_reference,
)
from service.observability.metrics import ApplianceMetrics
from service.settings import ServiceSettings

log = logging.getLogger(__name__)


class DriftMonitor(BackgroundLoop):
    """Sets ``metrics.drift_share`` from the feature store every ``interval_s`` seconds."""

    def __init__(
        self,
        store: FeatureStore,
        manifest: EnsembleManifest,
        metrics: ApplianceMetrics,
        interval_s: float,
        window: int,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"drift interval must be positive, got {interval_s} s")
        if window < MIN_CURRENT_ROWS:
            raise ValueError(f"drift window must hold at least {MIN_CURRENT_ROWS} studies")
        super().__init__("drift", stop_timeout_s=10.0, retry_s=interval_s)
        self.store = store
        self.reference = manifest_reference(manifest)
        self.metrics = metrics
        self.interval_s = interval_s
        self.window = window

    @classmethod
    def from_settings(
        cls, settings: ServiceSettings, metrics: ApplianceMetrics
    ) -> DriftMonitor | None:
        """The monitor the settings ask for; None when ``drift_interval_s`` is 0."""
        if settings.drift_interval_s == 0:
            return None
        return cls(
            FeatureStore(settings.drift_store),
            read_manifest(settings.model_dir),
            metrics,
            settings.drift_interval_s,
            settings.drift_window,
        )

    def measure(self) -> float | None:
        """The drift share of the newest rows, set on the gauge; None: too few rows yet."""
        rows = self.store.rows(last=self.window)
        if len(rows) < MIN_CURRENT_ROWS:
            return None
        result = drift_report(frame(rows), self.reference)
        self.metrics.drift_share.set(result.drift_share)
        log.info(
            "drift: %d of the features drifted (share %.2f) over the newest %d series",
            result.drifted_columns,
            result.drift_share,
            len(rows),
        )
        return result.drift_share

    def step(self) -> float:
        self.measure()
        return self.interval_s
