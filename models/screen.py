"""Window screening: sliding windows that cannot hold a lumen are not run (issue 13).

Most of a large field of view holds no contrast-filled (CT) or inflowing (MR TOF) lumen:
air, fat, soft tissue. A window is run only when its brightest voxel reaches the *lumen
floor*, read on the member input after a Gaussian smoothing of one voxel (without it,
noise alone lights up every window):

- **CT**: 100 HU. CT angiography lumens are >= 150 HU; the partial-volume peak of a
  lumen narrower than a voxel, smoothed, stays above 100 HU over soft tissue of 10-80 HU.
- **MR TOF**: 1.5 x the tissue level (``models.normalisation.tissue_level``); lumens are
  >= 2x the tissue.

A skipped window adds probability 0 with its full blending weight, so the seams where
run and skipped windows meet blend exactly as between two run windows. Every member gets 0
there, so the uncertainty maps show 0 too: the certainty of a rule (no voxel bright
enough to be a lumen), not of the networks; the run report counts the skipped windows.
Bone, fat in MR and calcifications are bright: windows holding them are run. What the
screen costs is measured, not assumed: ``benchmarks.screen_check`` compares screened and
unscreened ensembles on the locked test split and the shift suite.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.manifest import Normalisation

CT_LUMEN_FLOOR_HU = 100.0
MR_LUMEN_FLOOR_RATIO = 1.5
SMOOTHING_VOXELS = 1.0
_TRUNCATE_SIGMAS = 4.0  # scipy's default
# scipy's Gaussian reaches int(truncate * sigma + 0.5) voxels: a slab that reads this many
# more on each side filters its own voxels exactly as the whole volume would.
_SMOOTHING_REACH = int(_TRUNCATE_SIGMAS * SMOOTHING_VOXELS + 0.5)


@dataclass
class WindowTally:
    """How many sliding windows were run and how many the screen skipped."""

    run: int = 0
    skipped: int = 0

    @property
    def skipped_fraction(self) -> float:
        total = self.run + self.skipped
        return self.skipped / total if total else 0.0


def lumen_floor(spec: Normalisation, modality: str) -> float:
    """The lumen floor in member-input units for ``modality`` ("CT" or "MR")."""
    if modality == "CT":
        return (CT_LUMEN_FLOOR_HU - spec.ct_centre_hu) / spec.ct_width_hu
    if modality == "MR":
        return math.log2(MR_LUMEN_FLOOR_RATIO) * spec.mr_log2_scale
    raise ValueError(f"no lumen floor for modality {modality!r}: CT or MR")


def _smooth(volume: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(
        volume, SMOOTHING_VOXELS, mode="nearest", truncate=_TRUNCATE_SIGMAS
    )


def brightness(member_input: np.ndarray, workers: int | None = None) -> np.ndarray:
    """The member input smoothed by one voxel: what a window's maximum is read from.

    Filtered in slabs along z, two per thread, on ``workers`` threads (default: the CPUs
    this process may use; scipy's filters release the GIL), each slab with its neighbours'
    edge voxels, so the result equals the whole volume's filter voxel for voxel. On 2 cores
    a 256^3 grid took 0.16 s instead of 0.37 s (smaller slabs also stay in cache longer).
    """
    depth = member_input.shape[0]
    workers = workers or len(os.sched_getaffinity(0))
    slabs = min(2 * workers, depth // (4 * _SMOOTHING_REACH))
    if workers < 2 or slabs < 2:
        return _smooth(member_input)
    bounds = [depth * k // slabs for k in range(slabs + 1)]
    out = np.empty(member_input.shape, dtype=member_input.dtype)

    def smooth_slab(low: int, high: int) -> None:
        first, last = max(0, low - _SMOOTHING_REACH), min(depth, high + _SMOOTHING_REACH)
        out[low:high] = _smooth(member_input[first:last])[low - first : high - first]

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(smooth_slab, bounds[:-1], bounds[1:]))
    return out


@dataclass(frozen=True)
class WindowScreen:
    """``brightness`` on the member's grid and the floor a window's maximum must reach."""

    brightness: np.ndarray
    floor: float

    def may_hold_lumen(self, window: tuple[slice, slice, slice]) -> bool:
        return bool(self.brightness[window].max() >= self.floor)
