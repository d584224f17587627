"""Modality-aware normalisation: the same tissue maps to the same value whatever fills the box."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from models.manifest import Normalisation
from models.normalisation import normalise, resolve_modality, tissue_level
from synthetic.case import Modality, generate_case
from synthetic.shifts import shifted_case

SPEC = Normalisation()


def _levels(case_image: np.ndarray, mask: np.ndarray, modality: str) -> tuple[float, float]:
    """Median normalised value of lumen cores and of tissue away from vessels."""
    out = normalise(case_image, SPEC, modality)
    core = ndimage.binary_erosion(mask, iterations=1)
    tissue = ndimage.binary_dilation(mask, iterations=3) == 0
    tissue &= out > (-2.0 if modality == "CT" else -1.0)  # not air
    return float(np.median(out[core])), float(np.median(out[tissue]))


@pytest.mark.parametrize("modality", ["CT", "MR"])
@pytest.mark.requirement("SRS-080")
def test_air_around_the_body_does_not_move_lumen_or_tissue(modality: str) -> None:
    clean = generate_case(2000, modality)
    lumen, tissue = _levels(clean.image, clean.mask, modality)
    for severity in ("moderate", "severe"):
        shifted = shifted_case(2000, modality, "air", severity)
        shifted_lumen, shifted_tissue = _levels(shifted.image, shifted.mask, modality)
        assert shifted_lumen == pytest.approx(lumen, abs=0.1), severity
        assert shifted_tissue == pytest.approx(tissue, abs=0.05), severity


@pytest.mark.requirement("SRS-080")
def test_mr_gain_and_uniform_background_do_not_move_the_lumen() -> None:
    clean = generate_case(2001, Modality.MR)
    lumen, _ = _levels(clean.image, clean.mask, "MR")
    for name in ("scale", "uniform_background"):
        shifted = shifted_case(2001, Modality.MR, name, "moderate")
        assert _levels(shifted.image, shifted.mask, "MR")[0] == pytest.approx(lumen, abs=0.1)


@pytest.mark.requirement("SRS-080")
def test_tissue_level_ignores_air_and_bright_vessels() -> None:
    rng = np.random.default_rng(0)
    tissue = rng.normal(140.0, 15.0, size=(40, 64, 64)).clip(1)
    tissue[:, :8, :] = 4000.0  # a bright minority (vessels) must not become "the body"
    assert tissue_level(tissue) == pytest.approx(140.0, rel=0.05)
    with_air = tissue.copy()
    with_air[:, :, :38] = np.abs(rng.normal(0.0, 12.0, size=(40, 64, 38)))  # 60 % air
    assert tissue_level(with_air) == pytest.approx(140.0, rel=0.08)


@pytest.mark.requirement("SRS-080")
def test_modality_comes_from_the_header_else_from_the_values() -> None:
    ct = generate_case(2002, Modality.CT).image
    mr = generate_case(2002, Modality.MR).image
    assert resolve_modality("", ct) == "CT" and resolve_modality("", mr) == "MR"
    assert resolve_modality("MR", ct) == "MR"  # the DICOM header wins
    with pytest.raises(ValueError, match="modality 'PT' is not supported"):
        resolve_modality("PT", mr)
