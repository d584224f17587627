"""The service's drift monitor (service/drift_monitor.py) sets minivess_drift_share."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.manifest import read_manifest
from service.drift_monitor import DriftMonitor
from service.observability.drift import FEATURE_NAMES, FeatureStore, feature_row
from service.observability.metrics import ApplianceMetrics
from service.settings import ServiceSettings

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "ensemble"


def _store(tmp_path: Path, rows: list[dict[str, float]]) -> FeatureStore:
    store = FeatureStore(tmp_path / "features.jsonl")
    for n, features in enumerate(rows):
        store.append(feature_row(f"{n:032x}", f"1.2.3.{n}", features, "CT", "2.1.0"))
    return store


def _gauge(metrics: ApplianceMetrics) -> float:
    value = metrics.registry.get_sample_value("minivess_drift_share")
    assert value is not None
    return value


@pytest.mark.requirement("SRS-048", "SRS-089")
def test_the_gauge_reads_the_share_of_drifted_features(tmp_path: Path) -> None:
    manifest = read_manifest(SHIPPED)
    reference = [study.features for study in manifest.reference_features]
    metrics = ApplianceMetrics()
    like_reference = DriftMonitor(_store(tmp_path / "a", reference), manifest, metrics, 60, 50)
    assert like_reference.measure() == pytest.approx(0.0)
    assert _gauge(metrics) == 0.0
    # Every feature moved far outside the validation studies: all of them drift.
    shifted = [{name: value * 5 + 1000 for name, value in row.items()} for row in reference]
    drifted = DriftMonitor(_store(tmp_path / "b", shifted), manifest, metrics, 60, 50)
    assert drifted.measure() == pytest.approx(1.0)
    assert _gauge(metrics) == pytest.approx(1.0)
    assert set(shifted[0]) == set(FEATURE_NAMES)


def test_too_few_studies_leave_the_gauge_alone_and_bad_settings_are_refused(
    tmp_path: Path,
) -> None:
    manifest = read_manifest(SHIPPED)
    metrics = ApplianceMetrics()
    rows = [study.features for study in manifest.reference_features][:3]
    assert DriftMonitor(_store(tmp_path, rows), manifest, metrics, 60, 50).measure() is None
    assert _gauge(metrics) == 0.0
    with pytest.raises(ValueError, match="interval"):
        DriftMonitor(_store(tmp_path, []), manifest, metrics, 0, 50)
    with pytest.raises(ValueError, match="window"):
        DriftMonitor(_store(tmp_path, []), manifest, metrics, 60, 2)
    off = ServiceSettings(var_dir=tmp_path / "var", drift_interval_s=0)
    assert DriftMonitor.from_settings(off, metrics) is None
    on = ServiceSettings(var_dir=tmp_path / "var", model_dir=SHIPPED)
    monitor = DriftMonitor.from_settings(on, metrics)
    assert monitor is not None and monitor.store.path == on.drift_store
