"""The MR lumen-growth rule (models/lumen_growth.py) on volumes whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from models.lumen_growth import MrMaskRules, grow_bright_lumen
from models.manifest import Calibration, LumenGrowth

TISSUE = 120.0
RULE = LumenGrowth(min_probability=0.3, min_contrast_ratio=0.6)


def _study() -> dict[str, np.ndarray]:
    """A 6x lumen tube the members found only half of, beside things that must not join.

    - ``core``: predicted (probability 0.9); ``rest``: the tube's other half, 0.4;
    - ``dim``: 1.8x tissue joined to the tube, 0.4 (too dim: below 0.6 of the lumen);
    - ``unsure``: the tube continued at 6x, but only 0.1 (no member believes it);
    - ``island``: 6x, 0.4, but not joined to the mask.
    """
    rng = np.random.default_rng(5)
    image = rng.normal(TISSUE, 3.0, size=(40, 40, 40)).astype(np.float32)
    probability = np.zeros(image.shape, np.float32)
    parts = {name: np.zeros(image.shape, bool) for name in ("core", "rest", "dim", "unsure")}
    parts["island"] = np.zeros(image.shape, bool)
    parts["core"][4:20, 17:23, 17:23] = True
    parts["rest"][20:30, 17:23, 17:23] = True
    parts["unsure"][30:36, 17:23, 17:23] = True
    parts["dim"][10:14, 23:32, 18:22] = True
    parts["island"][8:14, 4:9, 30:35] = True
    for name, level, p in (("core", 6.0, 0.9), ("rest", 6.0, 0.4), ("unsure", 6.0, 0.1),
                           ("dim", 1.8, 0.4), ("island", 6.0, 0.4)):  # fmt: skip
        image[parts[name]] = level * TISSUE
        probability[parts[name]] = p
    return {"image": image, "probability": probability, **parts}


@pytest.mark.requirement("SRS-092")
def test_the_mask_grows_into_bright_half_believed_lumen_joined_to_it() -> None:
    s = _study()
    mask = (s["probability"] >= 0.5).astype(np.uint8)
    grown, added = grow_bright_lumen(mask, s["probability"], s["image"], "MR", RULE)
    assert grown.dtype == mask.dtype and grown[s["core"]].all()
    # The lumen's own rim is partial volume, dimmer after smoothing: its core must join.
    core_of_rest = np.zeros_like(s["rest"])
    core_of_rest[20:30, 18:22, 18:22] = True
    assert grown[core_of_rest].all()
    assert int(core_of_rest.sum()) <= added <= int(s["rest"].sum())
    assert np.array_equal(grown.astype(bool), mask.astype(bool) | (grown.astype(bool) & s["rest"]))
    for name in ("dim", "unsure", "island"):
        assert not grown[s[name]].any(), f"{name} must not be grown into"
    assert not mask[s["rest"]].any(), "the caller's mask is not changed in place"


@pytest.mark.requirement("SRS-092")
def test_growth_is_off_for_ct_and_without_a_rule_and_checks_its_inputs() -> None:
    s = _study()
    mask = (s["probability"] >= 0.5).astype(np.uint8)
    for modality, rule in (("CT", RULE), ("MR", None)):
        grown, added = grow_bright_lumen(mask, s["probability"], s["image"], modality, rule)
        assert grown is mask and added == 0
    empty = np.zeros_like(mask)
    assert grow_bright_lumen(empty, s["probability"], s["image"], "MR", RULE)[1] == 0
    with pytest.raises(ValueError, match="one grid"):
        grow_bright_lumen(mask[:-1], s["probability"], s["image"], "MR", RULE)


@pytest.mark.requirement("SRS-092")
def test_the_rules_drop_a_faint_island_and_never_grow_it_back() -> None:
    s = _study()
    fat = s["island"]
    s["image"][fat] = 2.0 * TISSUE  # now fat: far dimmer than the lumen
    s["probability"][fat] = 0.95  # and confidently predicted, as the members do
    mask = (s["probability"] >= 0.5).astype(np.uint8)
    refined, dropped, added = MrMaskRules(0.4, RULE).apply(mask, s["probability"], s["image"], "MR")
    assert dropped.components == 1 and not refined[fat].any()
    assert refined[20:30, 18:22, 18:22].all() and 0 < added <= int(s["rest"].sum())


@pytest.mark.requirement("SRS-092")
def test_the_manifest_refuses_a_growth_that_would_undo_the_faint_rule() -> None:
    values = {"ood_threshold": 0.5, "validation_scores": {}, "rule": "r"}
    Calibration(**values, mr_faint_component_ratio=0.4, mr_lumen_growth=RULE)
    low = LumenGrowth(min_probability=0.3, min_contrast_ratio=0.4)
    with pytest.raises(ValidationError, match="must exceed the faint-component ratio"):
        Calibration(**values, mr_faint_component_ratio=0.4, mr_lumen_growth=low)
    with pytest.raises(ValidationError):
        LumenGrowth(min_probability=0.5, min_contrast_ratio=0.6)  # the mask's own cut
