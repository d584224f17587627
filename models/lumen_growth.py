"""The lumen-growth rule: in MR TOF, bright voxels the members half-believe, joined to the
tree, are lumen too.

Where the members are unsure of an MR lumen (faint or noisy vessels, a bias field, motion,
streaks) they under-segment it: on the validation split the lumen voxels they missed
carry a fused probability of about 0.26-0.39, and the mask's Dice falls to 0.72-0.78
where the tree itself is plain to see. The image settles it: in time-of-flight MR
angiography the inflowing blood is the brightest tissue class. So, after the
faint-component rule (:mod:`models.faint_components`), the mask grows into every voxel
that

- the members give a fused probability of at least ``min_probability`` (a voxel no
  member believes in is never added),
- stands at least ``min_contrast_ratio`` of the study's lumen contrast above the tissue
  (the contrast and the lumen level of :mod:`models.faint_components`: one-voxel smoothed
  brightness over the tissue level, 90th percentile over the mask), and
- is joined to the mask through such voxels (26-neighbourhood).

A ratio above the faint-component ratio keeps it from growing back a dropped island.
Only MR: in CT angiography bone and calcifications joined to a vessel are brighter than
its lumen. The probability and uncertainty maps are not changed; the run report counts
the grown voxels. Both values are chosen on the validation split and its shift suite and
recorded in the manifest (``Calibration.mr_lumen_growth``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.faint_components import (
    NEIGHBOURHOOD,
    DroppedComponents,
    bounding_box,
    drop_faint_components,
    lumen_contrast,
    study_contrast,
)
from models.manifest import LumenGrowth


def grow_bright_lumen(
    mask: np.ndarray,
    probability: np.ndarray,
    image: np.ndarray,
    modality: str,
    rule: LumenGrowth | None,
) -> tuple[np.ndarray, int]:
    """``mask`` grown into the bright lumen joined to it (MR with a rule only), and the
    number of voxels added. All three arrays share the study's grid; ``probability`` is
    the fused member probability before temperature scaling."""
    if not mask.shape == probability.shape == image.shape:
        raise ValueError(
            f"mask {mask.shape}, probability {probability.shape} and image {image.shape} "
            "are not on one grid"
        )
    if rule is None or modality != "MR":
        return mask, 0
    kept = mask.astype(bool)
    # The mask is the probability's 0.5 cut less dropped islands, so it lies inside the box.
    box = bounding_box(kept | (probability >= rule.min_probability))
    if box is None or not kept.any():
        return mask, 0
    inside = kept[box]
    contrast = study_contrast(image, box)
    lumen = lumen_contrast(contrast, inside)
    if lumen <= 0.0:
        return mask, 0
    bright = contrast >= rule.min_contrast_ratio * lumen
    joinable = (probability[box] >= rule.min_probability) & bright | inside
    labels, _ = ndimage.label(joinable, structure=NEIGHBOURHOOD)
    touched = np.unique(labels[inside])
    grown = np.isin(labels, touched[touched > 0]) & ~inside
    out = mask.copy()
    out[box][grown] = 1
    return out, int(np.count_nonzero(grown))


@dataclass(frozen=True)
class MrMaskRules:
    """The manifest's MR mask rules, in the order the appliance and the builder apply them:
    faint islands dropped, then the lumen grown."""

    faint_ratio: float | None = None
    growth: LumenGrowth | None = None

    def apply(
        self, mask: np.ndarray, probability: np.ndarray, image: np.ndarray, modality: str
    ) -> tuple[np.ndarray, DroppedComponents, int]:
        """The refined mask, what the faint rule dropped and how many voxels were grown."""
        kept, dropped = drop_faint_components(mask, image, modality, self.faint_ratio)
        grown, added = grow_bright_lumen(kept, probability, image, modality, self.growth)
        return grown, dropped, added
