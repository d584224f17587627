"""Members by modality (issue 11): a study runs only the members its modality is given to.

Each member's manifest entry names the modalities it runs on (``Member.modalities``,
default both). The fixture is the shipped ensemble's three CT members with their manifest
re-routed: unet-a on CT only, segresnet-b on both, unet-c on MR only (the member files,
and so their hashes, are unchanged).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from map_app.pipeline import Pipeline
from models.builder.config import SHIPPED, SMOKE
from models.builder.members import train_and_export
from models.digest import sha256_file
from models.inference import ensemble_probabilities
from models.loader import LoadedEnsemble, load_ensemble
from models.manifest import MANIFEST_NAME, EnsembleManifest, read_manifest
from models.screen import WindowTally
from operators.errors import ModelLoadError
from operators.segmentation.fusion import segmentation_result
from synthetic.case import Modality, generate_case
from synthetic.splits import LoadedCase

MODELS = Path(__file__).resolve().parents[1] / "models" / "ensemble"
ROUTES = {"unet-a": ["CT"], "segresnet-b": ["CT", "MR"], "unet-c": ["MR"]}


@pytest.fixture
def routed(tmp_path: Path) -> Path:
    folder = tmp_path / "ensemble"
    shutil.copytree(MODELS, folder, ignore=shutil.ignore_patterns("*-mr.onnx"))
    document = json.loads((folder / MANIFEST_NAME).read_text())
    document["members"] = [m for m in document["members"] if m["name"] in ROUTES]
    for member in document["members"]:
        member["modalities"] = ROUTES[member["name"]]
    (folder / MANIFEST_NAME).write_text(json.dumps(document))
    return folder


def _run(ensemble: LoadedEnsemble, modality: Modality, seed: int) -> tuple[list[str], list[str]]:
    """(members the windows were run for, member names in the result) for one study."""
    case = generate_case(seed, modality, fov_mm=(20.0, 24.0, 24.0))
    tallies: dict[str, WindowTally] = {}
    stack = ensemble_probabilities(
        ensemble, case.image, case.geometry.spacing, modality=modality.value, tallies=tallies
    )
    assert stack.shape[1:] == case.image.shape
    result = segmentation_result(
        ensemble, stack, None, case.geometry.spacing, case.image, modality.value
    )
    assert stack.shape[0] == len(result.member_names)
    return sorted(tallies), list(result.member_names)


@pytest.mark.requirement("SRS-093")
def test_a_study_opens_and_runs_only_the_members_of_its_modality(routed: Path) -> None:
    ensemble = load_ensemble(routed, threads=2)
    assert not any(m.is_open for m in ensemble.members)  # verified; nothing opened yet
    ran, named = _run(ensemble, Modality.MR, 3301)
    assert ran == ["segresnet-b", "unet-c"] and named == ["segresnet-b", "unet-c"]
    assert [m.member.name for m in ensemble.members if m.is_open] == ["segresnet-b", "unet-c"]
    ran, named = _run(ensemble, Modality.CT, 3302)
    assert ran == ["segresnet-b", "unet-a"] and named == ["unet-a", "segresnet-b"]


@pytest.mark.requirement("SRS-093")
def test_a_modality_without_members_is_refused_by_name(routed: Path) -> None:
    manifest = read_manifest(routed)
    ct_only = manifest.model_copy(update={"members": (manifest.members[0],)})
    assert [m.name for m in ct_only.members_for("CT")] == ["unet-a"]
    with pytest.raises(ValueError, match="has no member for MR studies"):
        ct_only.members_for("MR")
    # Members of manifests written before the fields run on both and trained on both.
    document = json.loads((routed / MANIFEST_NAME).read_text())
    for member in document["members"]:
        del member["modalities"], member["training_modalities"]
    older = EnsembleManifest.model_validate(document)
    assert all(m.modalities == m.training_modalities == ("CT", "MR") for m in older.members)


@pytest.mark.requirement("SRS-093")
def test_a_member_without_training_studies_of_its_modality_stops_the_build(
    tmp_path: Path,
) -> None:
    mr_only = SMOKE.members[0].model_copy(
        update={"modalities": ("MR",), "training_modalities": ("MR",)}
    )
    recipe = SMOKE.model_copy(update={"members": (SMOKE.members[1], mr_only)})
    ct = generate_case(3303, Modality.CT, fov_mm=(16.0, 16.0, 16.0))
    cases = [LoadedCase("ct", Modality.CT, ct.image, ct.mask, ct.geometry)]
    with pytest.raises(ValueError, match="trains on MR studies, but the training data holds none"):
        train_and_export(recipe, cases, "0" * 64, cases, tmp_path, tmp_path, False)
    assert not list(tmp_path.glob("*.pt"))  # refused before any member trained


@pytest.mark.requirement("SRS-093")
def test_the_service_opens_every_member_at_start_a_one_shot_run_none(routed: Path) -> None:
    assert all(m.is_open for m in Pipeline(routed, open_sessions=True).ensemble.members)
    assert not any(m.is_open for m in Pipeline(routed).ensemble.members)
    # Bytes that match their manifest but are no network fail at start, not at a study.
    victim = routed / "unet-c.onnx"
    victim.write_bytes(b"not an onnx model")
    document = json.loads((routed / MANIFEST_NAME).read_text())
    entry = next(m for m in document["members"] if m["name"] == "unet-c")
    entry["sha256"], entry["size_bytes"] = sha256_file(victim), victim.stat().st_size
    (routed / MANIFEST_NAME).write_text(json.dumps(document))
    with pytest.raises(ModelLoadError, match="could not open the members"):
        Pipeline(routed, open_sessions=True)


@pytest.mark.requirement("SRS-093")
def test_the_shipped_ensemble_runs_mr_on_members_trained_on_mr_alone() -> None:
    manifest = read_manifest(MODELS)
    assert [m.name for m in manifest.members_for("CT")] == ["unet-a", "segresnet-b", "unet-c"]
    mr = manifest.members_for("MR")
    assert [m.name for m in mr] == ["unet-a-mr", "segresnet-b-mr", "unet-c-mr"]
    assert all(m.training_modalities == ("MR",) for m in mr)
    # The recipe that builds it says the same, member for member.
    assert [(m.name, m.modalities, m.training_modalities) for m in SHIPPED.members] == [
        (m.name, m.modalities, m.training_modalities) for m in manifest.members
    ]
    # A member's Dice is measured on the modalities it runs on, and only there.
    assert all(set(m.metrics) == set(m.modalities) for m in manifest.members)
