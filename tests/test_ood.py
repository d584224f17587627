"""The out-of-distribution flag: calibrated on validation studies, raised on unlike input.

Honest scope: the flag (ensemble disagreement above 1.25x the highest validation score)
catches input that is nothing like an angiogram (noise, structured patterns). Subtler
shifts - inverted contrast, heavy noise on a real study - raise the score but not always
above the threshold; drift monitoring (service/observability/drift.py) watches those.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from map_app.__main__ import main as map_main
from models.inference import ensemble_probabilities
from models.loader import load_ensemble
from models.manifest import read_manifest
from models.uncertainty import study_uncertainty_score
from synthetic.case import Modality, generate_case
from synthetic.nifti import write_nifti

MODELS = Path(__file__).resolve().parents[1] / "models" / "ensemble"


@pytest.fixture(scope="module")
def scored() -> dict[str, float]:
    """Study scores of fresh in-distribution cases and of inputs unlike the training data."""
    ensemble = load_ensemble(MODELS)
    ct = generate_case(3100, Modality.CT)
    rng = np.random.default_rng(0)
    volumes = {
        "ct": (ct.image, ct.geometry.spacing),
        "mr": (generate_case(3100, Modality.MR).image, None),
        "noise": (rng.normal(100.0, 30.0, ct.image.shape), ct.geometry.spacing),
        "checkerboard": (
            (np.indices(ct.image.shape).sum(axis=0) % 2) * 500.0,
            ct.geometry.spacing,
        ),
    }
    scores = {}
    for name, (image, spacing) in volumes.items():
        if spacing is None:
            spacing = generate_case(3100, Modality.MR).geometry.spacing
        members = ensemble_probabilities(ensemble, image.astype(np.float32), spacing)
        scores[name] = study_uncertainty_score(members)
    return scores


@pytest.mark.requirement("SRS-007")
def test_in_distribution_studies_are_not_flagged(scored: dict[str, float]) -> None:
    threshold = read_manifest(MODELS).calibration.ood_threshold
    assert scored["ct"] < threshold and scored["mr"] < threshold, scored


@pytest.mark.requirement("SRS-007")
@pytest.mark.parametrize("name", ["noise", "checkerboard"])
def test_unlike_inputs_are_flagged(scored: dict[str, float], name: str) -> None:
    assert scored[name] > read_manifest(MODELS).calibration.ood_threshold, scored


@pytest.mark.requirement("SRS-007")
def test_flagged_study_is_still_answered_and_marked(tmp_path: Path) -> None:
    case = generate_case(3101, Modality.CT)
    noise = np.random.default_rng(1).normal(100.0, 30.0, case.image.shape).astype(np.float32)
    write_nifti(tmp_path / "noise.nii.gz", noise, case.geometry)
    assert map_main(["-i", str(tmp_path / "noise.nii.gz"), "-o", str(tmp_path / "out")]) == 0
    [series] = json.loads((tmp_path / "out" / "report.json").read_text())["series"]
    assert series["status"] == "done" and series["out_of_distribution"] is True
    assert Path(series["outputs"]["vessel_mask"]).is_file()
