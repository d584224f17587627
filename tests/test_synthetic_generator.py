"""The synthetic study generator: physical plausibility, geometry and NIfTI round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import ndimage

from operators.geometry import VoxelGeometry
from operators.nifti.io import read_nifti, write_nifti
from synthetic.__main__ import main as synthetic_cli
from synthetic.case import Modality, generate_case
from synthetic.rasterize import signed_distance
from synthetic.tree import grow_tree


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.requirement("SRS-025")
def test_spacing_is_clinical_and_anisotropic(seed: int) -> None:
    case = generate_case(seed, Modality.CT)
    dz, dy, dx = case.geometry.spacing
    assert 0.4 <= dy == dx <= 0.8
    assert 0.5 <= dz <= 1.5


@pytest.mark.requirement("SRS-025")
def test_radii_taper_within_range_and_branch() -> None:
    branches = grow_tree((40.0, 48.0, 48.0), np.random.default_rng(3))
    radii = np.concatenate([b.radii for b in branches])
    assert radii.min() >= 0.5 and radii.max() <= 4.0
    assert len(branches) >= 3  # at least one bifurcation
    for branch in branches:
        assert np.all(np.diff(branch.radii) <= 1e-9)  # tapering, never widening


@pytest.mark.requirement("SRS-025")
def test_mask_is_the_inside_of_the_tubes() -> None:
    branches = grow_tree((20.0, 20.0, 20.0), np.random.default_rng(5))
    sdf = signed_distance(branches, (41, 41, 41), (0.5, 0.5, 0.5))
    point = branches[0].points[len(branches[0].points) // 2]
    k, j, i = np.round(point / 0.5).astype(int)
    assert sdf[k, j, i] < 0  # a centreline voxel is inside
    assert (sdf <= 0).mean() < 0.5


@pytest.mark.parametrize("seed", [2000, 2001])
@pytest.mark.requirement("SRS-025")
def test_ct_intensities(seed: int) -> None:
    case = generate_case(seed, Modality.CT)
    assert case.image.dtype == np.int16
    # Lumen voxels well inside large vessels: contrast range 250-500 HU plus noise.
    core = ndimage.binary_erosion(case.mask, iterations=2)
    if core.any():
        assert 200 <= np.median(case.image[core]) <= 550
    background = np.median(case.image[case.mask == 0])
    assert -150 <= background <= 150
    assert case.image.max() >= 600  # bone or calcification distractors exist


@pytest.mark.requirement("SRS-025")
def test_mr_intensities() -> None:
    case = generate_case(2000, Modality.MR)
    assert case.image.dtype == np.uint16
    assert np.median(case.image[case.mask > 0]) > 2 * np.median(case.image[case.mask == 0])


@pytest.mark.requirement("SRS-025")
def test_nifti_round_trip(tmp_path: Path) -> None:
    case = generate_case(4, Modality.MR)
    write_nifti(tmp_path / "image.nii.gz", case.image, case.geometry)
    image, geometry = read_nifti(tmp_path / "image.nii.gz")
    assert np.array_equal(image, case.image)
    assert geometry.shape == case.geometry.shape
    assert np.allclose(geometry.spacing, case.geometry.spacing, atol=1e-5)
    assert np.allclose(geometry.affine_lps(), case.geometry.affine_lps(), atol=1e-4)


@pytest.mark.requirement("SRS-025")
def test_geometry_rejects_bad_input() -> None:
    with pytest.raises(ValidationError, match="spacing must be positive"):
        VoxelGeometry(shape=(2, 2, 2), spacing=(0.0, 1.0, 1.0))
    with pytest.raises(ValidationError, match="orthogonal"):
        VoxelGeometry(shape=(2, 2, 2), spacing=(1.0, 1.0, 1.0), column_direction=(1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="'XR' is not a valid Modality"):
        generate_case(0, "XR")


@pytest.mark.requirement("SRS-025")
def test_cli_writes_nifti_and_rejects_unknown_quirk(tmp_path: Path) -> None:
    assert synthetic_cli(["nifti", "--seed", "3", "--modality", "MR", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "mr-00003_image.nii.gz").is_file()
    with pytest.raises(SystemExit):
        synthetic_cli(["dicom", "--seed", "3", "--out", str(tmp_path), "--quirks", "sepia"])
