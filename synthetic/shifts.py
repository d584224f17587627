"""The shift suite: families of acquisition shifts at graded severity.

Each variant regenerates a case with the same vessel tree (same seed) and a typical
appearance moved along one family; ``sparse_vessels`` alone regrows the tree (same seed)
in a part of the field of view, leaving vessel-free tissue around it. Severities are
``mild``, ``moderate`` and ``severe``; the robustness goal (issue 11) is judged at
``moderate``. The builder evaluates the ensemble on the variants of the validation seeds
(to set the failure-flag threshold) and of the locked test seeds (to report robustness and
failure detection).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from synthetic.appearance import Appearance
from synthetic.case import DEFAULT_FOV_MM, Modality, SyntheticCase, generate_case, typical_physics

Severity = Literal["mild", "moderate", "severe"]
SEVERITIES: tuple[Severity, ...] = ("mild", "moderate", "severe")


@dataclass(frozen=True)
class ShiftFamily:
    """``apply(appearance, level)`` with level 0, 1, 2 = mild, moderate, severe."""

    name: str
    modalities: tuple[Modality, ...]
    description: str
    apply: Callable[[Appearance, int, Modality], Appearance]
    slice_mm: tuple[float, float, float] | None = None  # thick-slice family only


def _set(**values: object) -> Callable[[Appearance, int, Modality], Appearance]:
    """A family that sets fields to the level's value (``field=(mild, moderate, severe)``)."""

    def apply(appearance: Appearance, level: int, modality: Modality) -> Appearance:
        update = {}
        for field, by_level in values.items():
            if isinstance(by_level, dict):
                by_level = by_level[modality.value]
            update[field] = by_level[level]  # type: ignore[index]
        return appearance.model_copy(update=update)

    return apply


def _background(appearance: Appearance, level: int, modality: Modality) -> Appearance:
    # Mild: no fat; moderate: no fat, no bone; severe: uniform tissue with air around it.
    update: dict[str, object] = {"fat": False}
    if level >= 1:
        update["bone"] = False
    if level >= 2:
        update["body_fraction"] = 0.5
    return appearance.model_copy(update=update)


BOTH = (Modality.CT, Modality.MR)
FAMILIES: tuple[ShiftFamily, ...] = (
    ShiftFamily(
        "low_contrast",
        BOTH,
        "faint lumens: CT 220/180/150 HU, MR 2.8/2.4/2.0 x background",
        _set(lumen={"CT": (220.0, 180.0, 150.0), "MR": (2.8, 2.4, 2.0)}),
    ),
    ShiftFamily(
        "high_contrast",
        BOTH,
        "bright lumens: CT 550/620/700 HU, MR 10/12.5/15 x background",
        _set(lumen={"CT": (550.0, 620.0, 700.0), "MR": (10.0, 12.5, 15.0)}),
    ),
    ShiftFamily(
        "uniform_background",
        BOTH,
        "no fat / no fat, no bone / uniform tissue inside air",
        _background,
    ),
    ShiftFamily(
        "air",
        BOTH,
        "elliptical body filling 80/60/45 % of the field of view, air outside",
        _set(body_fraction=(0.8, 0.6, 0.45)),
    ),
    ShiftFamily(
        "bias",
        BOTH,
        "smooth gain field, log-std 0.15/0.3/0.4 (MR coil bias; CT cupping)",
        _set(bias_amplitude=(0.15, 0.3, 0.4)),
    ),
    ShiftFamily("noise", BOTH, "noise x2/x3/x4", _set(noise_scale=(2.0, 3.0, 4.0))),
    ShiftFamily(
        "thick_slices",
        BOTH,
        "slices 2.0/2.5/3.0 mm (partial volume along z)",
        _set(),
        slice_mm=(2.0, 2.5, 3.0),
    ),
    ShiftFamily(
        "streaks",
        BOTH,
        "metal-like streaks through every slice, 0.5/1/2 x the lumen contrast",
        _set(streaks=(0.5, 1.0, 2.0)),
    ),
    ShiftFamily(
        "motion", BOTH, "motion ghosts of 10/20/35 % along y", _set(ghosting=(0.1, 0.2, 0.35))
    ),
    ShiftFamily(
        "sparse_vessels",
        BOTH,
        "the tree grows in 70/50/35 % of each axis of the field of view, vessel-free "
        "tissue around it (a field of view larger than the vascular territory)",
        _set(vessel_extent=(0.7, 0.5, 0.35)),
    ),
    ShiftFamily("rings", (Modality.CT,), "rings 1/2/3 x the noise", _set(rings=(1.0, 2.0, 3.0))),
    ShiftFamily(
        "scale",
        (Modality.MR,),
        "receiver gain x0.5/x0.25/x0.1 (coarser quantisation)",
        _set(intensity_scale=(0.5, 0.25, 0.1)),
    ),
)
FAMILY_NAMES = tuple(family.name for family in FAMILIES)


def family(name: str) -> ShiftFamily:
    for candidate in FAMILIES:
        if candidate.name == name:
            return candidate
    raise ValueError(f"unknown shift family {name!r}; choose from {FAMILY_NAMES}")


def shifted_case(
    seed: int, modality: Modality | str, name: str, severity: Severity
) -> SyntheticCase:
    """The case of ``seed`` with the typical appearance moved along family ``name``."""
    modality = Modality(modality)
    shift = family(name)
    if modality not in shift.modalities:
        raise ValueError(f"shift family {name!r} does not apply to {modality.value}")
    level = SEVERITIES.index(severity)
    spacing, typical = typical_physics(seed, modality)
    if shift.slice_mm is not None:
        spacing = (shift.slice_mm[level], spacing[1], spacing[2])
    appearance = shift.apply(typical, level, modality)
    return generate_case(seed, modality, spacing, DEFAULT_FOV_MM, appearance)


def variants(modality: Modality) -> list[tuple[str, Severity]]:
    """Every (family, severity) pair that applies to ``modality``."""
    return [
        (shift.name, severity)
        for shift in FAMILIES
        if modality in shift.modalities
        for severity in SEVERITIES
    ]
