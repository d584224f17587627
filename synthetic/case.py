"""One synthetic angiography case: image, ground-truth vessel mask and geometry."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from operators.geometry import VoxelGeometry
from synthetic.appearance import Appearance, AppearanceProfile, draw_appearance, draw_spacing
from synthetic.artefacts import body_outline
from synthetic.rasterize import occupancy, signed_distance
from synthetic.render import render_ct, render_mr_tof
from synthetic.tree import Branch, grow_tree

# Bump whenever a change alters generated voxels: it is recorded in the model manifest's
# provenance and in every split index, so stale data is never mixed with new models.
GENERATOR_VERSION = "2.0.0"

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
    appearance: Appearance


def generate_case(
    seed: int,
    modality: Modality | str,
    spacing: tuple[float, float, float] | None = None,
    fov_mm: tuple[float, float, float] = DEFAULT_FOV_MM,
    appearance: Appearance | AppearanceProfile = "typical",
) -> SyntheticCase:
    """Deterministically generate the case for ``seed``: same seed, same voxels.

    The tree, the appearance and the noise come from separate random streams of the seed,
    so a shifted variant of a case (``appearance`` given) keeps the same vessels.
    Slices thicker than ``_FINE_SLICE_MM`` are rendered on a finer grid and averaged, as a
    scanner integrates over its slice profile (partial volume along z).
    """
    modality = Modality(modality)
    stream = 0 if modality is Modality.CT else 1
    geometry_rng = np.random.default_rng([seed, stream, 0])
    appearance_rng = np.random.default_rng([seed, stream, 1])
    render_rng = np.random.default_rng([seed, stream, 2])
    profile: AppearanceProfile = "typical" if isinstance(appearance, Appearance) else appearance
    drawn_spacing, drawn = _draw_physics(appearance_rng, modality, profile)
    spacing = spacing or drawn_spacing
    if not isinstance(appearance, Appearance):
        appearance = drawn
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
    branches = _grow_vessels(box, appearance.vessel_extent, geometry_rng)
    mask = signed_distance(branches, shape, spacing) <= 0.0
    body = None
    if appearance.body_fraction is not None:
        body = body_outline(
            shape, spacing, appearance.body_fraction, appearance_rng, _vessel_centre(mask, spacing)
        )
        mask &= body  # vessels end at the skin
    image = _render(branches, shape, spacing, modality, appearance, body, render_rng)
    if modality is Modality.CT:
        stored = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
    else:
        stored = np.clip(np.rint(image), 0, 4095).astype(np.uint16)
    # Centre the grid on the isocentre, as a scanner would place a small FOV.
    origin = (-box[2] / 2.0, -box[1] / 2.0, -box[0] / 2.0)
    geometry = VoxelGeometry(shape=shape, spacing=spacing, origin=origin)
    return SyntheticCase(
        seed=seed,
        modality=modality,
        image=stored,
        mask=mask.astype(np.uint8),
        geometry=geometry,
        appearance=appearance,
    )


_FINE_SLICE_MM = 0.8


def _grow_vessels(
    box: tuple[float, float, float], extent: float, rng: np.random.Generator
) -> list[Branch]:
    """The tree grown in a sub-box of ``extent`` x each side, placed at random in ``box``.

    With ``extent`` 1 nothing else is drawn, so studies without the option keep their
    voxels (the locked test split among them).
    """
    if extent >= 1.0:
        return grow_tree(box, rng)
    branches = grow_tree((box[0] * extent, box[1] * extent, box[2] * extent), rng)
    offset = rng.uniform(0.0, 1.0, size=3) * np.asarray(box) * (1.0 - extent)
    return [Branch(points=b.points + offset, radii=b.radii) for b in branches]


def _draw_physics(
    rng: np.random.Generator, modality: Modality, profile: AppearanceProfile
) -> tuple[tuple[float, float, float], Appearance]:
    return draw_spacing(rng, profile), draw_appearance(rng, modality.value, profile)


def typical_physics(
    seed: int, modality: Modality | str
) -> tuple[tuple[float, float, float], Appearance]:
    """Spacing and appearance ``generate_case(seed, modality)`` uses, without rendering."""
    modality = Modality(modality)
    stream = 0 if modality is Modality.CT else 1
    return _draw_physics(np.random.default_rng([seed, stream, 1]), modality, "typical")


def _vessel_centre(mask: np.ndarray, spacing: tuple[float, float, float]) -> tuple[float, float]:
    """In-plane centroid of the vessels (mm from the FOV centre), kept within 20 % of it."""
    if not mask.any():
        return (0.0, 0.0)
    _, y, x = np.nonzero(mask)
    centre = []
    for values, axis in ((y, 1), (x, 2)):
        offset = (float(values.mean()) - (mask.shape[axis] - 1) / 2.0) * spacing[axis]
        limit = 0.2 * mask.shape[axis] * spacing[axis]
        centre.append(float(np.clip(offset, -limit, limit)))
    return (centre[0], centre[1])


def _render(
    branches: list[Branch],
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    modality: Modality,
    appearance: Appearance,
    body: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """The image on ``shape``; thick slices averaged from ``factor`` thin ones."""
    factor = max(1, int(np.ceil(spacing[0] / _FINE_SLICE_MM)))
    fine_spacing = (spacing[0] / factor, spacing[1], spacing[2])
    fine_shape = (shape[0] * factor, shape[1], shape[2])
    # Thin slice j of thick slice i sits at i*dz + (j - (factor-1)/2) * dz/factor; the
    # fine grid starts at 0, so move the tree by the first thin slice's offset.
    shift = np.array([(factor - 1) / 2.0 * fine_spacing[0], 0.0, 0.0])
    moved = [Branch(points=b.points + shift, radii=b.radii) for b in branches]
    vessel = occupancy(signed_distance(moved, fine_shape, fine_spacing), fine_spacing)
    fine_body = None if body is None else np.broadcast_to(body[:1], fine_shape)
    if fine_body is not None:
        vessel *= fine_body
    if modality is Modality.CT:
        fine = render_ct(vessel, moved, fine_spacing, appearance, fine_body, rng)
    else:
        fine = render_mr_tof(vessel, fine_spacing, appearance, fine_body, rng)
    return fine.reshape(shape[0], factor, shape[1], shape[2]).mean(axis=1)
