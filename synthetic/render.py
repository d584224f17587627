"""Render vessel occupancy as CT angiography (HU) or MR TOF angiography (arbitrary units).

CTA: iodinated contrast makes lumens 250-500 HU over ~40 HU soft tissue; bone (cortex
700-1400 HU, cancellous ~200-350 HU, close to the contrast range) and wall calcifications
(600-1000 HU) are bright distractors that are *not* vessel. Noise is Gaussian in HU.
MR TOF: inflowing blood is bright over suppressed stationary tissue; fat stays fairly
bright; a smooth multiplicative bias field comes from coil sensitivity; magnitude images
carry Rician noise (the modulus of complex Gaussian noise).
How bright, noisy, biased and artefact-laden a study is comes from its ``Appearance``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from synthetic.appearance import Appearance
from synthetic.artefacts import metal_streaks, motion_ghosts, rings
from synthetic.tree import Branch


def smooth_field(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    scale_mm: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Zero-mean, unit-std random field correlated over ``scale_mm``."""
    coarse_shape = tuple(
        max(2, int(np.ceil(n * s / scale_mm)) + 1) for n, s in zip(shape, spacing, strict=True)
    )
    coarse = rng.normal(size=coarse_shape)
    factors = [n / c for n, c in zip(shape, coarse_shape, strict=True)]
    field = ndimage.zoom(coarse, factors, order=3, mode="nearest")[
        : shape[0], : shape[1], : shape[2]
    ]
    field = np.pad(
        field, [(0, n - f) for n, f in zip(shape, field.shape, strict=True)], mode="edge"
    )
    field -= field.mean()
    return (field / max(float(field.std()), 1e-6)).astype(np.float32)


def _blur(image: np.ndarray, spacing: tuple[float, float, float], fwhm_mm: float) -> np.ndarray:
    sigma_mm = fwhm_mm / 2.355
    return ndimage.gaussian_filter(image, [sigma_mm / s for s in spacing], mode="nearest")


def _ellipsoid(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    centre_mm: np.ndarray,
    radii_mm: np.ndarray,
) -> np.ndarray:
    zz, yy, xx = (np.arange(n) * s for n, s in zip(shape, spacing, strict=True))
    return (
        ((zz[:, None, None] - centre_mm[0]) / radii_mm[0]) ** 2
        + ((yy[None, :, None] - centre_mm[1]) / radii_mm[1]) ** 2
        + ((xx[None, None, :] - centre_mm[2]) / radii_mm[2]) ** 2
    ) <= 1.0


def _bone(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A bone (cortex shell, cancellous core) near one side of the box."""
    box = np.asarray(shape) * np.asarray(spacing)
    centre = rng.uniform(0.0, 1.0, size=3) * box
    side = int(rng.integers(1, 3))
    centre[side] = box[side] * (0.05 if rng.random() < 0.5 else 0.95)
    radii = rng.uniform(0.18, 0.32, size=3) * box
    outer = _ellipsoid(shape, spacing, centre, radii)
    inner = _ellipsoid(shape, spacing, centre, np.maximum(radii - rng.uniform(1.5, 3.0), 0.5))
    return outer & ~inner, inner


def _calcifications(
    branches: list[Branch],
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Small bright plaques sitting on the walls of the larger vessels."""
    plaques = np.zeros(shape, dtype=bool)
    large = [b for b in branches if b.radii.max() >= 1.5]
    for _ in range(int(rng.integers(2, 7)) if large else 0):
        branch = large[int(rng.integers(0, len(large)))]
        index = int(rng.integers(0, len(branch.points)))
        offset = rng.normal(size=3)
        offset /= np.linalg.norm(offset)
        centre = branch.points[index] + offset * (branch.radii[index] + 0.3)
        plaques |= _ellipsoid(shape, spacing, centre, np.full(3, rng.uniform(0.5, 1.3)))
    return plaques


def render_ct(
    vessel_occupancy: np.ndarray,
    branches: list[Branch],
    spacing: tuple[float, float, float],
    appearance: Appearance,
    body: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """CT angiography in Hounsfield units, float32; air (-1000 HU) outside ``body``."""
    shape = vessel_occupancy.shape
    tissue = appearance.background + 12.0 * smooth_field(shape, spacing, 6.0, rng)
    if appearance.fat:
        tissue[smooth_field(shape, spacing, 10.0, rng) > 1.1] = rng.uniform(-120.0, -60.0)
    if appearance.bone:
        cortex, cancellous = _bone(shape, spacing, rng)
        tissue[cancellous] = rng.uniform(180.0, 320.0)
        tissue[cortex] = rng.uniform(700.0, 1400.0)
    if body is not None:
        tissue[~body] = -1000.0
    image = tissue + vessel_occupancy * (appearance.lumen - tissue)
    plaques = _calcifications(branches, shape, spacing, rng)
    image[plaques] = np.maximum(image[plaques], rng.uniform(600.0, 1000.0))
    image = _blur(image, spacing, fwhm_mm=0.6)
    sigma = rng.uniform(10.0, 25.0) * appearance.noise_scale
    image = _artefacts(
        image, spacing, appearance, appearance.lumen - appearance.background, sigma, rng
    )
    if appearance.bias_amplitude > 0.0:  # cupping / beam hardening: a smooth HU offset
        image = image + 100.0 * appearance.bias_amplitude * smooth_field(shape, spacing, 40.0, rng)
    image += rng.normal(scale=sigma, size=shape)
    return image.astype(np.float32)


def render_mr_tof(
    vessel_occupancy: np.ndarray,
    spacing: tuple[float, float, float],
    appearance: Appearance,
    body: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """MR time-of-flight angiography in arbitrary units (>= 0), float32; no signal in air."""
    shape = vessel_occupancy.shape
    background = appearance.background
    tissue = background * (1.0 + 0.12 * smooth_field(shape, spacing, 6.0, rng))
    if appearance.fat:
        tissue[smooth_field(shape, spacing, 10.0, rng) > 1.0] = background * rng.uniform(1.6, 2.6)
    if body is not None:
        tissue[~body] = 0.0
    blood = appearance.lumen * background
    image = tissue + vessel_occupancy * (blood - tissue)
    image = _blur(image, spacing, fwhm_mm=0.6)
    sigma = background / rng.uniform(6.0, 12.0) * appearance.noise_scale
    image = _artefacts(image, spacing, appearance, blood - background, sigma, rng)
    np.maximum(image, 0.0, out=image)  # a signal void cannot go below zero
    image *= np.exp(max(appearance.bias_amplitude, 1e-3) * smooth_field(shape, spacing, 40.0, rng))
    if appearance.gamma != 1.0:
        image = background * (image / background) ** appearance.gamma
    real = image + rng.normal(scale=sigma, size=shape)
    imaginary = rng.normal(scale=sigma, size=shape)
    magnitude = np.sqrt(real * real + imaginary * imaginary) * appearance.intensity_scale
    return magnitude.astype(np.float32)


def _artefacts(
    image: np.ndarray,
    spacing: tuple[float, float, float],
    appearance: Appearance,
    contrast: float,
    sigma: float,
    rng: np.random.Generator,
) -> np.ndarray:
    shape = image.shape
    if appearance.streaks > 0.0:
        image = image + metal_streaks(shape, spacing, appearance.streaks * contrast, rng)
    if appearance.rings > 0.0:
        image = image + rings(shape, spacing, appearance.rings * sigma, rng)
    if appearance.ghosting > 0.0:
        image = motion_ghosts(image, appearance.ghosting, rng)
    return np.asarray(image, dtype=np.float32)
