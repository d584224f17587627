"""Domain randomisation and the shift suite: the physics the ensemble is trained and judged on."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from synthetic.appearance import draw_appearance, draw_spacing
from synthetic.case import Modality, generate_case
from synthetic.shifts import FAMILIES, family, shifted_case, variants


@pytest.mark.requirement("SRS-025", "SRS-080")
def test_randomised_physics_spans_what_real_scanners_send() -> None:
    rng = np.random.default_rng(0)
    ct = [draw_appearance(rng, "CT", "randomised") for _ in range(400)]
    mr = [draw_appearance(rng, "MR", "randomised") for _ in range(400)]
    lumens = [a.lumen for a in ct]
    assert min(lumens) < 180 and max(lumens) > 650  # CT lumens 150-700 HU
    ratios = [a.lumen for a in mr]
    assert min(ratios) < 2.5 and max(ratios) > 12  # MR lumens 2-15x the background
    for drawn in (ct, mr):
        assert {a.body_fraction is None for a in drawn} == {True, False}  # with and without air
        assert {a.fat for a in drawn} == {True, False}
        assert max(a.noise_scale for a in drawn) > 3.5 and min(a.noise_scale for a in drawn) < 0.6
        assert max(a.bias_amplitude for a in drawn) > 0.35
        assert any(a.streaks > 0 for a in drawn) and any(a.ghosting > 0 for a in drawn)
    spacings = [draw_spacing(rng, "randomised") for _ in range(400)]
    assert max(s[0] for s in spacings) > 2.8 and min(s[1] for s in spacings) < 0.35


@pytest.mark.requirement("SRS-025", "SRS-080")
def test_air_around_the_body_is_minus_1000_hu_and_vessels_stay_inside() -> None:
    case = shifted_case(2000, Modality.CT, "air", "severe")
    air = case.image < -900
    assert 0.4 < air.mean() < 0.7  # the body fills 45 % of the field of view
    assert not (air & (case.mask > 0)).any()
    assert case.mask.sum() > 0.5 * generate_case(2000, Modality.CT).mask.sum()


@pytest.mark.requirement("SRS-025", "SRS-080")
def test_a_shift_keeps_the_vessels_and_moves_only_its_family() -> None:
    clean = generate_case(2001, Modality.MR)
    noisy = shifted_case(2001, Modality.MR, "noise", "severe")
    assert np.array_equal(clean.mask, noisy.mask)
    assert noisy.appearance == clean.appearance.model_copy(update={"noise_scale": 4.0})
    # Noise, not anatomy: the spread of neighbour differences inside the body.
    away = (ndimage.binary_dilation(clean.mask, iterations=3) == 0)[:, :, 1:]
    inside = away & (clean.image[:, :, 1:] > 0.5 * np.median(clean.image))

    def noise(image: np.ndarray) -> float:
        return float(np.diff(image.astype(float), axis=2)[inside].std())

    assert noise(noisy.image) > 2.0 * noise(clean.image)


@pytest.mark.requirement("SRS-025", "SRS-080")
def test_thick_slices_average_thin_ones() -> None:
    thick = shifted_case(2002, Modality.CT, "thick_slices", "severe")
    assert thick.geometry.spacing[0] == 3.0
    clean = generate_case(2002, Modality.CT)
    # Partial volume along z lowers the contrast of thin vessels: the lumen median falls.
    assert np.median(thick.image[thick.mask > 0]) < np.median(clean.image[clean.mask > 0])


@pytest.mark.requirement("SRS-025", "SRS-080")
def test_streaks_cross_every_slice() -> None:
    clean = generate_case(2003, Modality.CT)
    streaked = shifted_case(2003, Modality.CT, "streaks", "severe")
    difference = streaked.image.astype(float) - clean.image.astype(float)
    per_slice = np.abs(difference).reshape(difference.shape[0], -1).max(axis=1)
    assert per_slice.min() > 150  # HU: visible on every slice


@pytest.mark.requirement("SRS-025", "SRS-080")
def test_shift_suite_lists_every_family_per_modality() -> None:
    assert {f for f, _ in variants(Modality.CT)} == {
        f.name for f in FAMILIES if Modality.CT in f.modalities
    }
    assert ("scale", "moderate") in variants(Modality.MR)
    assert ("scale", "moderate") not in variants(Modality.CT)
    with pytest.raises(ValueError, match="unknown shift family 'sepia'"):
        family("sepia")
    with pytest.raises(ValueError, match="does not apply to CT"):
        shifted_case(2000, Modality.CT, "scale", "mild")


@pytest.mark.requirement("SRS-025", "SRS-080")
def test_sparse_vessels_leave_most_of_the_field_of_view_vessel_free() -> None:
    """The shift family that measures vessel-free tissue, as a large field of view holds."""
    sparse = shifted_case(2000, Modality.CT, "sparse_vessels", "severe")
    occupied = np.argwhere(sparse.mask > 0)
    extent_mm = (occupied.max(axis=0) - occupied.min(axis=0)) * np.asarray(sparse.geometry.spacing)
    box_mm = np.asarray(sparse.image.shape) * np.asarray(sparse.geometry.spacing)
    # The tree grows in 35 % of each axis; a trunk's radius may reach a little beyond.
    assert (extent_mm < 0.35 * box_mm + 8.0).all()
    assert sparse.mask.mean() < 0.5 * generate_case(2000, Modality.CT).mask.mean()
