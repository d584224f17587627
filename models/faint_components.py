"""The faint-component rule: in MR TOF, a bright island far dimmer than the lumens is not one.

In time-of-flight MR angiography the inflowing blood is the brightest tissue class. Fat
(short T1) also stays bright, about 1.5-2.8x the stationary tissue, and the members take
some of it for vessel, confidently and all alike (issue 11: fat islands at 2.0-2.8x the
tissue with probability 0.93-0.99, while the lumens of the same study stand at 4-7x). What
the networks see in one patch, a study-wide look settles: the lumen level of the study is
the 90th percentile of the brightness over everything predicted as vessel (the tree
dominates it), and a connected component (26-neighbourhood) of the mask whose brightest
voxel stands less than ``ratio`` of that lumen contrast above the tissue is dropped from
the mask::

    contrast(x) = brightness(x) / tissue - 1
    drop a component C  if  max_C contrast < ratio * percentile_90(contrast over the mask)

``brightness`` is the image smoothed by one voxel (:func:`models.screen.brightness`: a
single noisy voxel must not decide) and ``tissue`` the study's stationary-tissue level
(:func:`models.normalisation.tissue_level`). Distal vessels are dimmer by partial volume,
but they are connected to the tree and so judged with it; only islands are at stake.

Only MR: in CT angiography bone and calcifications are brighter than the lumens and fat is
dark, so the brightest-class argument does not hold. The probability and uncertainty maps
keep what the networks said; only the mask (the DICOM SEG) loses the dropped components,
and the run report counts them. The ratio is chosen by measurement on the validation split
and its shift suite and recorded in the manifest (``Calibration.mr_faint_component_ratio``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.normalisation import tissue_level
from models.screen import brightness

LUMEN_PERCENTILE = 90.0
# Context around the mask's bounding box, so the one-voxel smoothing sees real neighbours.
MARGIN_VOXELS = 4
# Components are 26-connected, in this rule and in the lumen-growth rule.
NEIGHBOURHOOD = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class DroppedComponents:
    """What the rule took out of the mask (zero when it did not apply)."""

    components: int = 0
    voxels: int = 0


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The box around ``mask``'s voxels, ``MARGIN_VOXELS`` wider; None when it is empty."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(np.any(mask, axis=others))
        if not len(present):
            return None
        start = max(0, int(present[0]) - MARGIN_VOXELS)
        stop = min(mask.shape[axis], int(present[-1]) + 1 + MARGIN_VOXELS)
        box.append(slice(start, stop))
    return tuple(box)


def study_contrast(image: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """``brightness / tissue - 1`` inside ``box``: how far each voxel stands above the tissue."""
    return brightness(np.asarray(image[box], dtype=np.float32)) / tissue_level(image) - 1.0


def lumen_contrast(contrast: np.ndarray, mask: np.ndarray) -> float:
    """The study's lumen level: the 90th percentile of ``contrast`` over the mask."""
    return float(np.percentile(contrast[mask], LUMEN_PERCENTILE))


def drop_faint_components(
    mask: np.ndarray, image: np.ndarray, modality: str, ratio: float | None
) -> tuple[np.ndarray, DroppedComponents]:
    """``mask`` without its faint components (MR with a ratio only), and what was dropped.

    ``mask`` and ``image`` share the study's grid; the returned mask has ``mask``'s dtype.
    """
    if mask.shape != image.shape:
        raise ValueError(f"mask {mask.shape} and image {image.shape} are not on one grid")
    if ratio is not None and not 0.0 < ratio < 1.0:
        raise ValueError(f"faint-component ratio {ratio} must lie in (0, 1)")
    box = bounding_box(mask.astype(bool, copy=False))
    if ratio is None or modality != "MR" or box is None:
        return mask, DroppedComponents()
    predicted = mask[box].astype(bool)
    contrast = study_contrast(image, box)
    labels, count = ndimage.label(predicted, structure=NEIGHBOURHOOD)
    lumen = lumen_contrast(contrast, predicted)
    if count < 2 or lumen <= 0.0:
        return mask, DroppedComponents()
    peaks = ndimage.maximum(contrast, labels, np.arange(1, count + 1))
    faint = np.flatnonzero(np.asarray(peaks) < ratio * lumen) + 1
    if not len(faint):
        return mask, DroppedComponents()
    dropped = np.isin(labels, faint)
    kept = mask.copy()
    kept[box][dropped] = 0
    return kept, DroppedComponents(components=len(faint), voxels=int(np.count_nonzero(dropped)))
