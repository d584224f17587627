"""Image artefacts of real scanners, applied to a rendered volume (z, y, x; axial slices).

- Metal streaks (CT beam hardening and photon starvation; MR susceptibility lines): bright
  and dark lines radiating from a dense point through every slice, fading with distance.
- Ring artefacts (CT detector miscalibration): concentric rings about the rotation axis.
- Motion ghosting (periodic motion during phase encoding): attenuated copies of the
  object shifted along the phase-encode axis (here y).
- Body outline: an elliptical body with air outside it, as almost every CT and MR has.
"""

from __future__ import annotations

import numpy as np


def _plane_mm(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    yy = (np.arange(shape[1]) - (shape[1] - 1) / 2.0) * spacing[1]
    xx = (np.arange(shape[2]) - (shape[2] - 1) / 2.0) * spacing[2]
    return np.stack(np.meshgrid(yy, xx, indexing="ij"))


def _about_a_point(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    spread: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """In-plane (y, x) mm, FOV extent, a random centre within +-``spread`` x the extent,
    and every pixel's distance to it: the frame of a point-like artefact source."""
    y, x = _plane_mm(shape, spacing)
    extent = max(shape[1] * spacing[1], shape[2] * spacing[2])
    centre = rng.uniform(-spread, spread, size=2) * extent
    return y, x, extent, centre, np.hypot(y - centre[0], x - centre[1])


def body_outline(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    area_fraction: float,
    rng: np.random.Generator,
    centre_mm: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Boolean in-plane ellipse (same on every slice) covering ``area_fraction`` of the FOV.

    ``centre_mm`` (y, x from the FOV centre) is where the anatomy of interest lies: the
    body is drawn around it, as a scan is centred on its target.
    """
    y, x = _plane_mm(shape, spacing)
    height = shape[1] * spacing[1]
    width = shape[2] * spacing[2]
    aspect = rng.uniform(0.75, 1.33)
    # pi * a * b = fraction * height * width, with a / b = aspect.
    b = np.sqrt(area_fraction * height * width / (np.pi * aspect))
    a = aspect * b
    cy, cx = np.asarray(centre_mm) + rng.uniform(-0.05, 0.05, size=2) * (height, width)
    inside = ((y - cy) / a) ** 2 + ((x - cx) / b) ** 2 <= 1.0
    return np.broadcast_to(inside, shape).copy()


def metal_streaks(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    amplitude: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Additive streak field (same units as ``amplitude``), float32, through every slice."""
    y, x, extent, centre, radius = _about_a_point(shape, spacing, 0.6, rng)
    field = np.zeros(shape[1:], dtype=np.float32)
    fade = 1.0 / (1.0 + radius / (0.5 * extent))
    for angle in rng.uniform(0.0, np.pi, size=int(rng.integers(6, 20))):
        distance = np.abs((x - centre[1]) * np.sin(angle) - (y - centre[0]) * np.cos(angle))
        width = rng.uniform(0.3, 1.2)
        sign = 1.0 if rng.random() < 0.45 else -1.0  # dark streaks dominate near metal
        field += (sign * rng.uniform(0.4, 1.0) * np.exp(-0.5 * (distance / width) ** 2)).astype(
            np.float32
        )
    field *= (amplitude * fade).astype(np.float32)
    # Streaks vary slowly along z: the metal's cross-section changes between slices.
    along_z = 1.0 + 0.3 * np.sin(np.linspace(0.0, rng.uniform(1.0, 4.0), shape[0]))
    return (along_z[:, None, None] * field[None]).astype(np.float32)


def rings(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    amplitude: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Additive concentric rings about an (off-centre) rotation axis, float32."""
    _, _, extent, _, radius = _about_a_point(shape, spacing, 0.3, rng)
    field = np.zeros(shape[1:], dtype=np.float32)
    for ring_radius in rng.uniform(1.0, extent * 0.7, size=int(rng.integers(3, 10))):
        sign = 1.0 if rng.random() < 0.5 else -1.0
        field += (sign * amplitude * np.exp(-0.5 * ((radius - ring_radius) / 0.4) ** 2)).astype(
            np.float32
        )
    return np.broadcast_to(field, shape).astype(np.float32)


def motion_ghosts(image: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` plus ghost copies shifted along y (phase encoding), float32.

    Periodic motion of period P lines puts ghosts every N/P voxels; their total energy is
    ``fraction`` of the object, half on each side, alternating in sign (phase errors).
    """
    rows = image.shape[1]
    step = int(rng.integers(max(2, rows // 8), max(3, rows // 2)))
    ghosts = np.zeros_like(image, dtype=np.float32)
    mean = float(image.mean())
    for order, weight in ((1, 0.7), (2, 0.3)):
        for direction in (-1, 1):
            ghosts += (0.5 * weight) * np.roll(image - mean, direction * order * step, axis=1)
    return (image + fraction * ghosts).astype(np.float32)
