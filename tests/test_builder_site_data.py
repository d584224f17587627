"""Site datasets (issue 17): nnU-Net raw layout and DICOM + SEG, read and validated.

Each malformed case fails with its own kind and message; accepted cases are the builder's
``LoadedCase``; the site's test cases are hashed, locked and every read audited.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from models.builder.datasets import (
    DatasetLayoutError,
    DatasetValidationError,
    DataVersionError,
    load_site_dataset,
    read_site_test,
)
from operators.geometry import VoxelGeometry
from operators.nifti.io import read_nifti, write_nifti
from synthetic.splits import LoadedCase, TestSetLockoutError
from tests.builder_site_support import write_dicom_case, write_dicom_dataset, write_nnunet


def _load(root: Path, tmp_path: Path, **kwargs: object) -> object:
    return load_site_dataset(root, max_spacing_mm=3.0, lock_file=tmp_path / "lock.json", **kwargs)  # type: ignore[arg-type]


def _problems(root: Path, tmp_path: Path) -> list[tuple[str, str, str]]:
    with pytest.raises(DatasetValidationError) as caught:
        _load(root, tmp_path)
    assert "nothing was trained" in str(caught.value)
    return [(p.case, p.kind, p.message) for p in caught.value.problems]


def _audit_entries(split_dir: Path) -> list[dict[str, object]]:
    log = Path(os.environ["MINIVESS_AUDIT_LOG"])
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e for e in entries if e["details"].get("split_dir") == str(split_dir)]  # type: ignore[union-attr]


@pytest.fixture
def nnunet(tmp_path: Path) -> Path:
    return write_nnunet(tmp_path / "Dataset001_Vessels", [1, 2], [3])


@pytest.mark.requirement("SRS-019", "SRS-018", "SRS-091")
def test_nnunet_dataset_loads_as_loaded_cases_with_hashes_and_locked_test(
    nnunet: Path, tmp_path: Path
) -> None:
    dataset = load_site_dataset(nnunet, max_spacing_mm=3.0, lock_file=tmp_path / "lock.json")
    assert dataset.format == "nnunet" and dataset.labels == {0: "background", 1: "vessel"}
    assert [c.name for c in dataset.train] == ["site_001", "site_002"]
    case = dataset.train[0]
    assert isinstance(case, LoadedCase) and case.modality.value == "CT"
    assert case.image.dtype == np.float32 and case.mask.dtype == np.uint8
    assert case.mask.shape == case.image.shape and 0 < case.mask.sum() < case.mask.size
    assert dataset.test_cases == 1 and dataset.test_sha256 is not None
    lock = json.loads((tmp_path / "lock.json").read_text())
    assert lock[nnunet.name]["test_sha256"] == dataset.test_sha256
    # Same data, same hashes; every read of the test cases is in the audit log.
    again = load_site_dataset(nnunet, max_spacing_mm=3.0, lock_file=tmp_path / "lock.json")
    assert (again.train_sha256, again.test_sha256) == (dataset.train_sha256, dataset.test_sha256)
    test = read_site_test(
        nnunet, "auto", max_spacing_mm=3.0, lock_file=tmp_path / "lock.json", purpose="a test"
    )
    assert [c.name for c in test] == ["site_003"]
    entries = _audit_entries(nnunet / "test")
    assert len(entries) == 3 and {e["outcome"] for e in entries} == {"success"}
    assert "first read" in entries[0]["details"]["purpose"]  # type: ignore[index]
    assert entries[-1]["details"]["purpose"] == "a test"  # type: ignore[index]


@pytest.mark.requirement("SRS-018", "SRS-091")
def test_an_altered_site_test_set_is_refused_and_the_refusal_audited(
    nnunet: Path, tmp_path: Path
) -> None:
    _load(nnunet, tmp_path)
    label, geometry = read_nifti(nnunet / "labelsTs" / "site_003.nii.gz")
    label[0, 0, 0] = 1 - label[0, 0, 0]
    write_nifti(nnunet / "labelsTs" / "site_003.nii.gz", label, geometry)
    with pytest.raises(TestSetLockoutError, match="test set was altered"):
        read_site_test(
            nnunet, "nnunet", max_spacing_mm=3.0, lock_file=tmp_path / "lock.json", purpose="x"
        )
    assert _audit_entries(nnunet / "test")[-1]["outcome"] == "refused"


@pytest.mark.requirement("SRS-019", "SRS-091")
def test_a_pinned_training_hash_refuses_changed_data(nnunet: Path, tmp_path: Path) -> None:
    with pytest.raises(DataVersionError, match="the data changed"):
        _load(nnunet, tmp_path, expected_train_sha256="0" * 64)


@pytest.mark.requirement("SRS-019", "SRS-091")
def test_each_malformed_nnunet_case_fails_with_its_own_message(
    nnunet: Path, tmp_path: Path
) -> None:
    # test in training: site_002 (still valid) copied into the test cases
    shutil.copy(
        nnunet / "imagesTr" / "site_002_0000.nii.gz", nnunet / "imagesTs" / "leak_0000.nii.gz"
    )
    shutil.copy(nnunet / "labelsTr" / "site_002.nii.gz", nnunet / "labelsTs" / "leak.nii.gz")
    image, geometry = read_nifti(nnunet / "imagesTr" / "site_001_0000.nii.gz")
    label, _ = read_nifti(nnunet / "labelsTr" / "site_001.nii.gz")
    # geometry mismatch: the label shifted by 2 mm
    shifted = geometry.model_copy(
        update={"origin": (geometry.origin[0] + 2.0, *geometry.origin[1:])}
    )
    write_nifti(nnunet / "labelsTr" / "site_001.nii.gz", label, shifted)
    # label values: a 3 where only 0 and 1 are declared
    other, other_geometry = read_nifti(nnunet / "labelsTr" / "site_002.nii.gz")
    other[0, 0, :2] = 3
    write_nifti(nnunet / "labelsTr" / "site_002.nii.gz", other, other_geometry)

    def add(name: str, array: np.ndarray, grid: VoxelGeometry, mask: np.ndarray) -> None:
        write_nifti(nnunet / "imagesTr" / f"{name}_0000.nii.gz", array, grid)
        write_nifti(nnunet / "labelsTr" / f"{name}.nii.gz", mask, grid)

    c, s = np.cos(0.2), np.sin(0.2)
    add(
        "oblique",
        image,
        geometry.model_copy(
            update={"row_direction": (c, s, 0.0), "column_direction": (-s, c, 0.0)}
        ),
        label,
    )
    add("coronal", image, geometry.model_copy(update={"column_direction": (0.0, 0.0, 1.0)}), label)
    add("coarse", image, geometry.model_copy(update={"spacing": (5.0, 1.0, 1.0)}), label)
    add("copy", image, geometry, label)  # same image as site_001: a duplicate
    write_nifti(nnunet / "imagesTr" / "unlabelled_0000.nii.gz", image[:, :, ::-1].copy(), geometry)

    found = {case: (kind, message) for case, kind, message in _problems(nnunet, tmp_path)}
    assert found["site_001"][0] == "geometry-mismatch"
    assert "label origin lies 2.000 mm from the image's" in found["site_001"][1]
    assert found["site_002"] == (
        "label-values",
        "imagesTr/site_002_0000.nii.gz: label values [3] are not declared "
        "(declared: {0: 'background', 1: 'vessel'})",
    )
    assert found["oblique"][0] == "refused-geometry" and "oblique or tilted" in found["oblique"][1]
    assert found["coronal"][0] == "refused-geometry"
    assert "Coronal slices: the appliance's selection rule takes axial" in found["coronal"][1]
    assert found["coarse"][0] == "refused-geometry"
    assert "coarser than the recipe's max_spacing_mm 3.0" in found["coarse"][1]
    assert found["copy"][0] == "duplicate" and "same image content as" in found["copy"][1]
    assert found["leak"][0] == "test-in-training"
    assert "is also in training (imagesTr/site_002_0000.nii.gz)" in found["leak"][1]
    assert found["unlabelled"] == (
        "missing-label",
        "imagesTr/unlabelled_0000.nii.gz has no annotation labelsTr/unlabelled.nii.gz",
    )


@pytest.mark.requirement("SRS-019", "SRS-091")
def test_nnunet_layout_errors_name_what_is_wrong(tmp_path: Path) -> None:
    root = write_nnunet(tmp_path / "two-channels", [1], [])
    meta = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps(meta | {"channel_names": {"0": "CT", "1": "MR"}}))
    with pytest.raises(DatasetLayoutError, match="exactly one channel '0'"):
        _load(root, tmp_path)
    (root / "dataset.json").write_text(json.dumps(meta | {"channel_names": {"0": "PET"}}))
    with pytest.raises(
        DatasetLayoutError, match="channel 0 is 'PET'; the appliance takes CT or MR"
    ):
        _load(root, tmp_path)
    (root / "dataset.json").unlink()
    with pytest.raises(DatasetLayoutError, match="neither an nnU-Net raw dataset"):
        _load(root, tmp_path)


@pytest.mark.requirement("SRS-019", "SRS-018", "SRS-091")
def test_dicom_seg_dataset_loads_and_matches_the_generator(tmp_path: Path) -> None:
    root = write_dicom_dataset(tmp_path / "site-dicom", [1, 2], [3])
    dataset = load_site_dataset(root, max_spacing_mm=3.0, lock_file=tmp_path / "lock.json")
    assert dataset.format == "dicom-seg" and len(dataset.train) == 2 and dataset.test_cases == 1
    nn = write_nnunet(tmp_path / "nn", [1, 2], [3])
    reference = load_site_dataset(nn, max_spacing_mm=3.0, lock_file=tmp_path / "lock2.json")
    # The SEG's mask and the series' voxels are the generator's, read through DICOM.
    by_sum = sorted(dataset.train, key=lambda c: int(c.mask.sum()))
    ref_sum = sorted(reference.train, key=lambda c: int(c.mask.sum()))
    for got, want in zip(by_sum, ref_sum, strict=True):
        assert got.name.startswith("dicom-") and got.geometry == want.geometry
        assert np.array_equal(got.mask, want.mask)
        assert np.allclose(got.image, want.image, atol=1.0)
    assert _audit_entries(root / "test")[0]["outcome"] == "success"


@pytest.mark.requirement("SRS-019", "SRS-091")
def test_each_malformed_dicom_case_fails_with_its_own_message_and_no_phi(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_dicom_dataset(tmp_path / "site-dicom", [1, 2], [])
    # geometry mismatch: the SEG's first frame moved 2 mm off the slice it references
    seg_file = root / "train" / "case-1" / "seg.dcm"
    seg = pydicom.dcmread(seg_file)
    position = seg.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    position.ImagePositionPatient = [float(position.ImagePositionPatient[0]) + 2.0] + [
        float(v) for v in position.ImagePositionPatient[1:]
    ]
    seg.save_as(seg_file)
    # duplicate: a second SEG of case 2's series; test in training: case 2 also under test/
    shutil.copy(root / "train" / "case-2" / "seg.dcm", root / "train" / "case-2" / "seg-again.dcm")
    second = pydicom.dcmread(root / "train" / "case-2" / "seg-again.dcm")
    second.SOPInstanceUID = second.SOPInstanceUID + ".1"
    second.save_as(root / "train" / "case-2" / "seg-again.dcm")
    shutil.copytree(root / "train" / "case-2", root / "test" / "case-2")
    (root / "test" / "case-2" / "seg-again.dcm").unlink()
    write_dicom_case(root / "train" / "case-4", 4)
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "artery": 2}}))
    with caplog.at_level(logging.DEBUG), pytest.raises(DatasetValidationError) as caught:
        _load(root, tmp_path)
    problems = caught.value.problems
    kinds = sorted(p.kind for p in problems)
    # the undeclared segment (1, 'Blood vessel') hits every SEG before any other check
    assert set(kinds) == {"label-values"}
    assert "SEG segments {1: " in problems[0].message and "'artery'" in problems[0].message
    (root / "dataset.json").unlink()
    with caplog.at_level(logging.DEBUG), pytest.raises(DatasetValidationError) as caught:
        _load(root, tmp_path)
    found = sorted((p.split, p.kind, p.message) for p in caught.value.problems)
    assert [(split, kind) for split, kind, _ in found] == [
        ("test", "test-in-training"),
        ("train", "duplicate"),
        ("train", "geometry-mismatch"),
    ]
    assert "SEG frame 1 lies 2.000 mm away from the slice it references" in found[2][2]
    text = str(caught.value) + caplog.text
    for identity in ("SYNTHETIC^CT", "SYN-CT-"):
        assert identity not in text


@pytest.mark.requirement("SRS-019", "SRS-091")
def test_vessel_labels_choose_the_classes_and_unlabelled_test_images_are_not_used(
    tmp_path: Path,
) -> None:
    labels = {"background": 0, "artery": 1, "bone": 2}
    root = write_nnunet(tmp_path / "multi", [1, 2], [3], labels=labels)
    label, geometry = read_nifti(root / "labelsTr" / "site_001.nii.gz")
    bone = (label == 0) & (np.arange(label.shape[2])[None, None, :] < 3)
    write_nifti(root / "labelsTr" / "site_001.nii.gz", np.where(bone, 2, label), geometry)
    every = _load(root, tmp_path)
    arteries = _load(root, tmp_path, vessel_labels=("artery",))
    assert every.train[0].mask.sum() == (label > 0).sum() + bone.sum()
    assert arteries.train[0].mask.sum() == (label > 0).sum()
    with pytest.raises(DatasetLayoutError, match=r"vessel_labels \['vein'\] are not declared"):
        _load(root, tmp_path, vessel_labels=("vein",))
    shutil.rmtree(root / "labelsTs")
    assert _load(root, tmp_path).test_cases == 0


@pytest.mark.requirement("SRS-019", "SRS-091")
def test_check_site_data_validates_without_training(
    nnunet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from models.builder.__main__ import main

    work = tmp_path / "work"
    assert main(["--check-site-data", f"--site-data={nnunet}", f"--work-dir={work}"]) == 0
    dataset = _load(nnunet, tmp_path)
    out = capsys.readouterr().out
    assert f"2 training cases, SHA-256 {dataset.train_sha256}" in out
    assert f"1 test cases, SHA-256 {dataset.test_sha256} (locked)" in out
    assert (work / "site-test-lock.json").is_file() and not (tmp_path / "data").exists()
    (nnunet / "labelsTr" / "site_002.nii.gz").unlink()
    assert main(["--check-site-data", f"--site-data={nnunet}", f"--work-dir={work}"]) == 65
    assert "train/site_002: [missing-label]" in capsys.readouterr().err
