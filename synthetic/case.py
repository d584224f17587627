"""One synthetic angiography case: image, ground-truth vessel mask and geometry."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from synthetic.geometry import VoxelGeometry
from synthetic.rasterize import occupancy, signed_distance
from synthetic.render import render_ct, render_mr_tof
from synthetic.tree import grow_tree

# Bump whenever a change alters generated voxels: it is recorded in the model manifest's
# provenance and in every split index, so stale data is never mixed with new models.
GENERATOR_VERSION = "1.0.0"

DEFAULT_FOV_MM = (40.0, 48.0, 48.0)


class Modality(enum.StrEnum):
    """DICOM Modality (0008,0060) values the generator renders."""

    CT = "CT"
    MR = "MR"


@dataclass(frozen=True)
class SyntheticCase:
    """Image values are stored values: CT as int16 HU, MR as uint16 arbitrary units."""

    seed: int
    modality: Modality
    image: np.ndarray
    mask: np.ndarray
    geometry: VoxelGeometry


def draw_spacing(rng: np.random.Generator) -> tuple[float, float, float]:
    """Anisotropic clinical spacing: in-plane 0.4-0.8 mm, slices 0.5-1.5 mm (dz, dy, dx)."""
    in_plane = round(float(rng.uniform(0.4, 0.8)), 3)
    slice_mm = round(float(rng.uniform(0.5, 1.5)), 3)
    return (slice_mm, in_plane, in_plane)


def generate_case(
    seed: int,
    modality: Modality | str,
    spacing: tuple[float, float, float] | None = None,
    fov_mm: tuple[float, float, float] = DEFAULT_FOV_MM,
) -> SyntheticCase:
    """Deterministically generate the case for ``seed``: same seed, same voxels."""
    modality = Modality(modality)
    rng = np.random.default_rng([seed, 0 if modality is Modality.CT else 1])
    if spacing is None:
        spacing = draw_spacing(rng)
    shape = (
        max(1, round(fov_mm[0] / spacing[0])),
        max(1, round(fov_mm[1] / spacing[1])),
        max(1, round(fov_mm[2] / spacing[2])),
    )
    box = (
        (shape[0] - 1) * spacing[0],
        (shape[1] - 1) * spacing[1],
        (shape[2] - 1) * spacing[2],
    )
    branches = grow_tree(box, rng)
    sdf = signed_distance(branches, shape, spacing)
    mask = (sdf <= 0.0).astype(np.uint8)
    vessel = occupancy(sdf, spacing)
    if modality is Modality.CT:
        image = np.clip(np.rint(render_ct(vessel, branches, spacing, rng)), -1024, 3071)
        stored = image.astype(np.int16)
    else:
        image = np.clip(np.rint(render_mr_tof(vessel, spacing, rng)), 0, 4095)
        stored = image.astype(np.uint16)
    # Centre the grid on the isocentre, as a scanner would place a small FOV.
    origin = (-box[2] / 2.0, -box[1] / 2.0, -box[0] / 2.0)
    geometry = VoxelGeometry(shape=shape, spacing=spacing, origin=origin)
    return SyntheticCase(seed=seed, modality=modality, image=stored, mask=mask, geometry=geometry)
