"""The MR faint-component rule (models/faint_components.py) on volumes whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from models.faint_components import drop_faint_components

TISSUE = 120.0


def _study() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A 6x lumen tube, a dimmer side branch joined to it, and a separate 2.2x fat island.

    Returns the image, the predicted mask (all three) and the masks of the tree and the fat.
    """
    rng = np.random.default_rng(3)
    image = rng.normal(TISSUE, 4.0, size=(40, 40, 40)).astype(np.float32)
    tree = np.zeros(image.shape, dtype=bool)
    tree[5:35, 17:23, 17:23] = True  # the lumen, 6x the tissue
    image[tree] = 6.0 * TISSUE
    branch = np.zeros(image.shape, dtype=bool)
    branch[20:22, 23:32, 19:21] = True  # joined to the tube; partial volume: 2.5x
    image[branch] = 2.5 * TISSUE
    fat = np.zeros(image.shape, dtype=bool)
    fat[8:14, 4:10, 28:36] = True
    image[fat] = 2.2 * TISSUE
    mask = (tree | branch | fat).astype(np.uint8)
    return image, mask, tree | branch, fat


@pytest.mark.requirement("SRS-085")
def test_an_mr_island_far_fainter_than_the_lumens_is_dropped() -> None:
    image, mask, tree, fat = _study()
    kept, dropped = drop_faint_components(mask, image, "MR", 0.4)
    assert kept.dtype == mask.dtype
    assert not kept[fat].any()
    # The dimmer branch is judged with the tree it joins: it stays.
    assert kept[tree].all()
    assert (dropped.components, dropped.voxels) == (1, int(fat.sum()))
    assert mask[fat].all(), "the caller's mask is not changed in place"


@pytest.mark.requirement("SRS-085")
def test_an_island_as_bright_as_the_lumens_stays() -> None:
    image, mask, _, fat = _study()
    image[fat] = 5.0 * TISSUE  # a second vessel, not fat
    kept, dropped = drop_faint_components(mask, image, "MR", 0.4)
    assert np.array_equal(kept, mask)
    assert dropped.components == 0


@pytest.mark.requirement("SRS-085")
def test_the_rule_is_off_for_ct_and_without_a_ratio() -> None:
    image, mask, _, _ = _study()
    for modality, ratio in (("CT", 0.4), ("MR", None)):
        kept, dropped = drop_faint_components(mask, image, modality, ratio)
        assert kept is mask
        assert dropped.components == 0
    empty = np.zeros_like(mask)
    assert drop_faint_components(empty, image, "MR", 0.4)[1].components == 0


def test_bad_inputs_are_refused_with_a_reason() -> None:
    image, mask, _, _ = _study()
    with pytest.raises(ValueError, match="not on one grid"):
        drop_faint_components(mask[:-1], image, "MR", 0.4)
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\)"):
        drop_faint_components(mask, image, "MR", 1.5)
