"""Drift: feature store, reference synthesis, Evidently reports on features of real runs.

Live features come from synthetic studies run through the shipped ensemble (seeds outside
the train 0-63, validation 1000-1199 and test 2000-2005 ranges). Findings these tests pin:

* Per-modality reference (a CT baseline feature store): CT vs CT no drift, MR vs CT drift
  in the intensity features.
* The manifest's reference profile pools the CT and MR validation studies, so a stream
  with the validation mix shows no drift against it, while a single-modality stream
  (CT-only as well as MR-only) drifts in ``intensity_p50`` by construction.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.features import FEATURE_NAMES, study_features
from models.manifest import EnsembleManifest, read_manifest
from service.observability.__main__ import main
from service.observability.drift import (
    FeatureRow,
    FeatureStore,
    drift_report,
    feature_row,
    frame,
    manifest_reference,
    reference_sample,
)

MODEL_DIR = Path("models/ensemble")
BASELINE_SEEDS = range(3000, 3008)
CURRENT_SEEDS = range(4000, 4008)
# The median intensity separates CT (HU) from MR. The IQR no longer does at 8 studies:
# it depends on how much air the field of view holds, and half the typical studies of
# either modality have air around the body (synthetic.appearance).
INTENSITY = ("intensity_p50",)


@pytest.fixture(scope="module")
def manifest() -> EnsembleManifest:
    return read_manifest(MODEL_DIR)


@pytest.fixture(scope="module")
def live_rows() -> dict[tuple[str, int], FeatureRow]:
    """Feature rows of 32 synthetic studies (CT/MR x baseline/current seeds)."""
    from models.inference import ensemble_probabilities
    from models.loader import load_ensemble
    from operators.segmentation.fusion import segmentation_result
    from synthetic.case import generate_case

    ensemble = load_ensemble(MODEL_DIR)
    rows = {}
    for modality in ("CT", "MR"):
        for seed in (*BASELINE_SEEDS, *CURRENT_SEEDS):
            case = generate_case(seed, modality)
            members = ensemble_probabilities(
                ensemble, case.image, case.geometry.spacing, modality=modality
            )
            result = segmentation_result(
                ensemble, members, None, case.geometry.spacing, case.image, modality
            )
            features = study_features(
                case.image,
                case.geometry.spacing,
                result.mean_probability,
                result.uncertainty_score,
            )
            rows[modality, seed] = feature_row(
                uuid.uuid4().hex, f"2.25.{seed}", features, modality, "1.0.0"
            )
    return rows


def _frame(rows: dict[tuple[str, int], FeatureRow], modality: str, seeds: range) -> pd.DataFrame:
    return frame(rows[modality, seed] for seed in seeds)


@pytest.mark.requirement("SRS-050")
def test_manifest_reference_is_the_validation_studies_by_modality(
    manifest: EnsembleManifest,
) -> None:
    ct = manifest_reference(manifest, "CT")
    assert len(ct) == sum(s.modality == "CT" for s in manifest.reference_features) >= 8
    assert list(ct.columns) == list(FEATURE_NAMES)
    assert len(manifest_reference(manifest)) == len(manifest.calibration.validation_scores)
    without_rows = manifest.model_copy(update={"reference_features": ()})
    synthetic = manifest_reference(without_rows)
    assert synthetic.equals(manifest_reference(without_rows))  # deterministic


@pytest.mark.requirement("SRS-050")
def test_reference_sample_reproduces_the_profile(manifest: EnsembleManifest) -> None:
    large = reference_sample(manifest.reference_profile, 2000)
    for name in FEATURE_NAMES:
        profile = manifest.reference_profile[name]
        p05, p50, p95 = np.percentile(large[name], [5, 50, 95])
        spread = profile.p95 - profile.p05
        assert p05 == pytest.approx(profile.p05, abs=0.01 * spread), name
        assert p50 == pytest.approx(profile.p50, abs=0.01 * spread), name
        assert p95 == pytest.approx(profile.p95, abs=0.01 * spread), name


@pytest.mark.requirement("SRS-050")
def test_feature_store_is_append_only_phi_free_and_survives_a_torn_line(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "drift" / "features.jsonl", fsync=True)
    features = dict.fromkeys(FEATURE_NAMES, 1.0)
    ids = [uuid.uuid4().hex for _ in range(4)]
    for index, correlation_id in enumerate(ids):
        store.append(feature_row(correlation_id, "1.2.840.99.7", features, ["CT", "MR"][index % 2]))
    with store.path.open("a") as out:
        out.write('{"timestamp": "2026-')  # a crash mid-write
    rows = store.rows()
    assert [row.correlation_id for row in rows] == ids and store.skipped_lines == 1
    assert [row.correlation_id for row in store.rows(modality="ct")] == ids[0::2]
    assert [row.correlation_id for row in store.rows(last=2)] == ids[2:]
    text = store.path.read_text()
    assert "1.2.840.99.7" not in text and rows[0].series_key in text
    with pytest.raises(ValueError, match="lacks"):
        feature_row(ids[0], "1.2", {"intensity_p50": 1.0})


@pytest.mark.slow
@pytest.mark.requirement("SRS-050")
def test_per_modality_reference_ct_vs_ct_none_mr_vs_ct_drift(live_rows: dict) -> None:
    baseline = _frame(live_rows, "CT", BASELINE_SEEDS)
    same = drift_report(_frame(live_rows, "CT", CURRENT_SEEDS), baseline)
    assert same.drifted_columns == 0 and not same.dataset_drift, same.summary()
    other = drift_report(_frame(live_rows, "MR", CURRENT_SEEDS), baseline)
    assert all(other.scores[name] < 0.05 for name in INTENSITY), other.summary()
    assert other.drift_share > same.drift_share


@pytest.mark.slow
@pytest.mark.requirement("SRS-050")
def test_ct_vs_the_manifests_ct_reference_none_mr_drifts(
    live_rows: dict, manifest: EnsembleManifest
) -> None:
    reference = manifest_reference(manifest, "CT")
    same = drift_report(_frame(live_rows, "CT", CURRENT_SEEDS), reference)
    assert same.drifted_columns == 0 and not same.dataset_drift, same.summary()
    other = drift_report(_frame(live_rows, "MR", CURRENT_SEEDS), reference)
    assert all(other.scores[name] < 0.05 for name in INTENSITY), other.summary()
    assert other.drift_share > same.drift_share


@pytest.mark.slow
@pytest.mark.requirement("SRS-050")
def test_drift_cli_writes_html_and_json(
    live_rows: dict, manifest: EnsembleManifest, tmp_path: Path, capsys
) -> None:
    store, baseline = FeatureStore(tmp_path / "features.jsonl"), FeatureStore(tmp_path / "ct.jsonl")
    for seed in BASELINE_SEEDS:
        baseline.append(live_rows["CT", seed])
    for seed in CURRENT_SEEDS:  # CT then MR: --last 8 picks the MR rows
        store.append(live_rows["CT", seed])
    for seed in CURRENT_SEEDS:
        store.append(live_rows["MR", seed])
    out = tmp_path / "reports"
    args = ["drift", "--store", str(store.path), "--out", str(out), "--last", "8"]
    against_ct = [*args, "--reference-store", str(baseline.path), "--fail-on-drift"]
    assert main(against_ct) in (0, 3)  # MR vs the CT baseline
    summary = json.loads(capsys.readouterr().out)
    assert summary["current_rows"] == 8 and summary["reference_rows"] == 8
    assert summary["scores"]["intensity_p50"] < 0.05
    assert Path(summary["html"]).stat().st_size > 10_000
    written = json.loads(Path(summary["json"]).read_text())
    assert written["summary"]["drift_share"] == summary["drift_share"]
    assert "metrics" in written["evidently"]

    assert main([*against_ct, "--modality", "CT"]) == 0  # CT vs CT: no dataset drift
    assert json.loads(capsys.readouterr().out)["drifted_columns"] == 0

    manifest_args = [*args, "--manifest", str(MODEL_DIR / "manifest.json"), "--modality", "CT"]
    assert main(manifest_args) == 0
    summary = json.loads(capsys.readouterr().out)
    ct_validation = sum(study.modality == "CT" for study in manifest.reference_features)
    assert summary["reference_rows"] == ct_validation and 0.0 <= summary["drift_share"] <= 1.0

    assert main([*args, "--manifest", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
