"""How a synthetic study looks: the scanner physics drawn per case (domain randomisation).

The vessel tree fixes *what* is in a study; an ``Appearance`` fixes *how a scanner shows
it*: lumen contrast, the background (body outline and air, fat, bone), the coil bias
field, noise, slice thickness and artefacts. Two draws exist:

- ``typical``: what the validation and locked test splits use, clinical-looking studies
  (CT lumens 250-500 HU, MR lumens 3-8x the background, air around the body in half of
  them, mild bias, nominal noise, 0.5-1.5 mm slices, no artefacts);
- ``randomised``: what the training split uses, deliberately wider than real variation
  (CT lumens 150-700 HU, MR lumens 2-15x, bias up to +/-40 %, noise x0.5-x4, slices
  0.4-3 mm, in-plane 0.3-1 mm, gamma, metal streaks, rings, motion ghosting), so that
  real scanners sit inside the training distribution (Tobin et al. 2017; SynthSeg,
  Billot et al. 2023; vesselFM, Wittmann et al. 2025).

The shift suite (``synthetic.shifts``) starts from a typical appearance and moves one
family of parameters at a graded severity.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

AppearanceProfile = Literal["typical", "randomised"]


class Appearance(BaseModel):
    """Scanner physics of one rendered study; every field is in physical units."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    body_fraction: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="in-plane area of the elliptical body / field of view; None: tissue "
        "fills the box (a field of view inside the body)",
    )
    fat: bool = True
    bone: bool = True
    background: float = Field(
        gt=-200.0, description="stationary tissue: CT HU, MR arbitrary units (> 0)"
    )
    lumen: float = Field(description="CT: lumen HU; MR: lumen signal / background signal")
    bias_amplitude: float = Field(
        default=0.1, ge=0.0, le=0.6, description="std of the log coil bias field"
    )
    noise_scale: float = Field(default=1.0, gt=0.0, le=8.0, description="x nominal noise")
    gamma: float = Field(default=1.0, gt=0.0, description="MR contrast curve (1 = linear)")
    intensity_scale: float = Field(default=1.0, gt=0.0, description="MR receiver gain")
    streaks: float = Field(
        default=0.0, ge=0.0, description="metal streak amplitude, x (lumen - background)"
    )
    rings: float = Field(default=0.0, ge=0.0, description="ring artefact amplitude, x noise")
    ghosting: float = Field(default=0.0, ge=0.0, le=0.8, description="motion ghost fraction")
    vessel_extent: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="share of each axis of the field of view the vessel tree grows in; the "
        "rest is vessel-free tissue, as most of a real field of view is",
    )


def _draw_spacing(
    rng: np.random.Generator, in_plane: tuple[float, float], slices: tuple[float, float]
) -> tuple[float, float, float]:
    plane = round(float(rng.uniform(*in_plane)), 3)
    return (round(float(rng.uniform(*slices)), 3), plane, plane)


def draw_spacing(
    rng: np.random.Generator, profile: AppearanceProfile = "typical"
) -> tuple[float, float, float]:
    """(dz, dy, dx) mm. Typical: in-plane 0.4-0.8, slices 0.5-1.5; randomised: 0.3-1, 0.4-3."""
    if profile == "typical":
        return _draw_spacing(rng, (0.4, 0.8), (0.5, 1.5))
    return _draw_spacing(rng, (0.3, 1.0), (0.4, 3.0))


def draw_appearance(
    rng: np.random.Generator, modality: str, profile: AppearanceProfile = "typical"
) -> Appearance:
    """Draw the physics of one study for ``modality`` ("CT" or "MR")."""
    ct = modality == "CT"
    with_air = rng.random() < 0.5
    if profile == "typical":
        return Appearance(
            body_fraction=float(rng.uniform(0.55, 0.9)) if with_air else None,
            fat=True,
            bone=ct,
            background=float(rng.uniform(30.0, 60.0) if ct else rng.uniform(90.0, 160.0)),
            lumen=float(rng.uniform(250.0, 500.0) if ct else rng.uniform(3.0, 8.0)),
            bias_amplitude=0.0 if ct else 0.1,
            noise_scale=1.0,
        )
    # Randomised: each nuisance independently, wider than real scanners.
    artefact = rng.random(3) < (0.25, 0.15, 0.2)
    if ct:
        background, lumen = float(rng.uniform(10.0, 80.0)), float(rng.uniform(150.0, 700.0))
    else:
        # MR gain is arbitrary: the background spans 20-2000 units, capped so that the
        # brightest lumen (with bias headroom) stays within 12-bit stored values.
        lumen = float(np.exp(rng.uniform(np.log(2.0), np.log(15.0))))
        background = float(np.exp(rng.uniform(np.log(20.0), np.log(min(2000.0, 2600.0 / lumen)))))
    return Appearance(
        body_fraction=float(rng.uniform(0.35, 0.95)) if with_air else None,
        fat=bool(rng.random() < 0.6),
        bone=bool(rng.random() < (0.7 if ct else 0.0)),
        background=background,
        lumen=lumen,
        bias_amplitude=float(rng.uniform(0.0, 0.4) if not ct or rng.random() < 0.3 else 0.0),
        noise_scale=float(np.exp(rng.uniform(np.log(0.5), np.log(4.0)))),
        gamma=1.0 if ct else float(np.exp(rng.uniform(np.log(0.7), np.log(1.4)))),
        streaks=float(rng.uniform(0.3, 2.5)) if artefact[0] else 0.0,
        rings=float(rng.uniform(0.5, 3.0)) if artefact[1] else 0.0,
        ghosting=float(rng.uniform(0.05, 0.4)) if artefact[2] else 0.0,
    )
