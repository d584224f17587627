"""Ensemble inference over a whole volume with ONNX Runtime (numpy only, no torch).

Per member: modality-aware normalisation on the native grid (``models.normalisation``),
resampling to the member's spacing, sliding-window inference with Gaussian blending,
optional test-time flips, softmax, and resampling of the vessel probability back to the
native grid. The builder evaluates the exported ONNX members through this same code, so
the metrics in the manifest describe what the appliance actually runs.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.loader import LoadedEnsemble, LoadedMember
from models.manifest import Normalisation
from models.normalisation import normalisation_reference, normalise, resolve_modality
from models.screen import WindowScreen, WindowTally, brightness, lumen_floor

Spacing = tuple[float, float, float]
Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SlidingWindowSettings:
    overlap: float = 0.25
    batch_size: int = 2
    sigma_scale: float = 0.125
    flips: tuple[tuple[int, ...], ...] = ()  # spatial axes (0=z, 1=y, 2=x) to flip for TTA
    screen: bool = False  # skip windows that cannot hold a lumen (models.screen)

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def resampled_shape(shape: Sequence[int], source: Spacing, target: Spacing) -> tuple[int, int, int]:
    """Grid on ``target`` spacing covering the same voxel-centre extent, first centres aligned."""
    out = [
        int(np.floor((n - 1) * s / t + 1e-6)) + 1
        for n, s, t in zip(shape, source, target, strict=True)
    ]
    return (out[0], out[1], out[2])


def resample(
    volume: np.ndarray,
    source: Spacing,
    target: Spacing,
    shape: Sequence[int] | None = None,
    order: int = 1,
) -> np.ndarray:
    """Resample between grids sharing voxel (0,0,0) and axes; ``shape`` defaults to same extent."""
    if tuple(source) == tuple(target) and (shape is None or tuple(shape) == volume.shape):
        return volume
    out_shape = tuple(shape) if shape is not None else resampled_shape(volume.shape, source, target)
    scale = [t / s for s, t in zip(source, target, strict=True)]
    return ndimage.affine_transform(
        volume, scale, output_shape=out_shape, order=order, mode="nearest", prefilter=False
    ).astype(np.float32, copy=False)


def _window_starts(size: int, patch: int, overlap: float) -> list[int]:
    if size <= patch:
        return [0]
    stride = max(1, round(patch * (1.0 - overlap)))
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def gaussian_importance(patch: Sequence[int], sigma_scale: float) -> np.ndarray:
    """Weights favouring patch centres, so seams between windows do not show."""
    axes = []
    for n in patch:
        centre = (n - 1) / 2.0
        sigma = max(n * sigma_scale, 1e-3)
        axes.append(np.exp(-0.5 * ((np.arange(n) - centre) / sigma) ** 2))
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weights = weights / weights.max()
    return np.maximum(weights, 1e-3).astype(np.float32)


def sliding_window_probability(
    predict: Predictor,
    volume: np.ndarray,
    patch: Sequence[int],
    settings: SlidingWindowSettings,
    screen: WindowScreen | None = None,
    tally: WindowTally | None = None,
) -> np.ndarray:
    """Vessel probability over ``volume`` from a predictor of (B,1,z,y,x) -> (B,2,z,y,x) logits.

    With ``screen``, windows that cannot hold a lumen are not run: they add probability 0
    with their blending weight. ``tally`` counts run and skipped windows.
    """
    pads = [(0, max(0, p - n)) for n, p in zip(volume.shape, patch, strict=True)]
    padded = np.pad(volume, pads, mode="edge") if any(p[1] for p in pads) else volume
    importance = gaussian_importance(patch, settings.sigma_scale)
    accum = np.zeros(padded.shape, dtype=np.float32)
    weight = np.zeros(padded.shape, dtype=np.float32)
    corners = list(
        itertools.product(
            *(
                _window_starts(n, p, settings.overlap)
                for n, p in zip(padded.shape, patch, strict=True)
            )
        )
    )
    pz, py, px = patch
    if screen is not None:
        kept = []
        for corner in corners:
            z, y, x = corner
            window = (slice(z, z + pz), slice(y, y + py), slice(x, x + px))
            if screen.may_hold_lumen(window):
                kept.append(corner)
            else:
                weight[window] += importance
        if tally is not None:
            tally.skipped += len(corners) - len(kept)
        corners = kept
    if tally is not None:
        tally.run += len(corners)
    for first in range(0, len(corners), settings.batch_size):
        batch_corners = corners[first : first + settings.batch_size]
        batch = np.stack([padded[z : z + pz, y : y + py, x : x + px] for z, y, x in batch_corners])
        probability = _vessel_probability(predict, batch[:, None], settings.flips)
        for (z, y, x), prob in zip(batch_corners, probability, strict=True):
            accum[z : z + pz, y : y + py, x : x + px] += prob * importance
            weight[z : z + pz, y : y + py, x : x + px] += importance
    np.divide(accum, weight, out=accum)
    return accum[: volume.shape[0], : volume.shape[1], : volume.shape[2]]


def _vessel_probability(
    predict: Predictor, batch: np.ndarray, flips: tuple[tuple[int, ...], ...]
) -> np.ndarray:
    """Softmax vessel channel, averaged over the identity and each flip."""
    total = _softmax_vessel(predict(np.ascontiguousarray(batch)))
    for axes in flips:
        spatial = tuple(a + 2 for a in axes)
        flipped = np.ascontiguousarray(np.flip(batch, spatial))
        total += np.flip(_softmax_vessel(predict(flipped)), tuple(a + 1 for a in axes))
    return total / (1 + len(flips))


def _softmax_vessel(logits: np.ndarray) -> np.ndarray:
    # Two classes: softmax of the vessel channel is the sigmoid of the logit difference.
    difference = (logits[:, 1] - logits[:, 0]).astype(np.float32)
    return (1.0 / (1.0 + np.exp(-difference))).astype(np.float32)


def onnx_predictor(loaded: LoadedMember) -> Predictor:
    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(loaded.session.run(None, {loaded.input_name: batch})[0])

    return predict


def member_input(
    image: np.ndarray,
    spacing: Spacing,
    member_spacing: Spacing,
    normalisation: Normalisation,
    modality: str,
    reference: float | None = None,
) -> np.ndarray:
    """A member's input: normalised on the native grid, resampled to the member's spacing.

    ``modality`` is "CT" or "MR" (``resolve_modality``); ``reference`` is
    ``normalisation_reference(image, modality)`` when the caller already has it.
    """
    normalised = normalise(image, normalisation, modality, reference)
    return resample(normalised, spacing, member_spacing, order=1)


def member_probability(
    predict: Predictor,
    image: np.ndarray,
    spacing: Spacing,
    member_spacing: Spacing,
    patch: Sequence[int],
    normalisation: Normalisation,
    settings: SlidingWindowSettings,
    modality: str = "",
    prepared: np.ndarray | None = None,
    bright: np.ndarray | None = None,
    tally: WindowTally | None = None,
) -> np.ndarray:
    """One member's vessel probability on the native grid of ``image``.

    ``prepared`` is ``member_input(...)`` and ``bright`` is ``brightness(prepared)`` when
    the caller already has them; ``tally`` counts the windows run and skipped.
    """
    modality = resolve_modality(modality, image)
    if prepared is None:
        prepared = member_input(image, spacing, member_spacing, normalisation, modality)
    screen = None
    if settings.screen:
        screen = WindowScreen(
            bright if bright is not None else brightness(prepared),
            lumen_floor(normalisation, modality),
        )
    probability = sliding_window_probability(predict, prepared, patch, settings, screen, tally)
    return resample(probability, member_spacing, spacing, shape=image.shape, order=1)


def ensemble_probabilities(
    ensemble: LoadedEnsemble,
    image: np.ndarray,
    spacing: Spacing,
    settings: SlidingWindowSettings | None = None,
    on_member_done: Callable[[str, float], None] | None = None,
    modality: str = "",
    tallies: dict[str, WindowTally] | None = None,
) -> np.ndarray:
    """Stack of member probabilities, shape (members, z, y, x), float32.

    ``modality`` is the DICOM Modality ("CT", "MR"; "" for a NIfTI input, inferred from
    the values). Members sharing a spacing and normalisation share one prepared input
    (normalising and resampling a large volume costs seconds). ``on_member_done(name,
    seconds)`` is told how long each member took; ``tallies`` receives each member's count
    of sliding windows run and skipped, by member name.
    """
    settings = settings or SlidingWindowSettings()
    modality = resolve_modality(modality, image)
    stacked = np.empty((len(ensemble.members), *image.shape), dtype=np.float32)
    prepared: dict[tuple[Spacing, Normalisation], np.ndarray] = {}
    bright: dict[tuple[Spacing, Normalisation], np.ndarray] = {}
    keys = [(m.member.input_spacing_mm, m.member.normalisation) for m in ensemble.members]
    last_use = {key: index for index, key in enumerate(keys)}
    reference: float | None = None
    for index, loaded in enumerate(ensemble.members):
        member = loaded.member
        started = time.perf_counter()
        key = keys[index]
        if key not in prepared:
            if reference is None:  # one pass over the volume for every member
                reference = normalisation_reference(image, modality)
            prepared[key] = member_input(
                image, spacing, member.input_spacing_mm, member.normalisation, modality, reference
            )
            if settings.screen:
                bright[key] = brightness(prepared[key])
        stacked[index] = member_probability(
            onnx_predictor(loaded),
            image,
            spacing,
            member.input_spacing_mm,
            member.patch_size,
            member.normalisation,
            settings,
            modality=modality,
            prepared=prepared[key],
            bright=bright.get(key),
            tally=None if tallies is None else tallies.setdefault(member.name, WindowTally()),
        )
        if last_use[key] == index:
            del prepared[key]  # bounded memory: no member needs this grid any more
            bright.pop(key, None)
        if on_member_done is not None:
            on_member_done(member.name, time.perf_counter() - started)
    return stacked


def fuse(
    probabilities: np.ndarray,
    method: str,
    weights: Sequence[float] | None = None,
    threshold: float = 0.5,
) -> np.ndarray:
    """Fused vessel probability (mean, weighted mean) or vote fraction (majority)."""
    if method == "mean":
        return probabilities.mean(axis=0)
    if method == "weighted":
        if weights is None or len(weights) != probabilities.shape[0]:
            raise ValueError("weighted fusion needs one weight per member")
        w = np.asarray(weights, dtype=np.float32)
        return np.tensordot(w / w.sum(), probabilities, axes=1).astype(np.float32)
    if method == "majority":
        return (probabilities >= threshold).mean(axis=0).astype(np.float32)
    raise ValueError(f"unknown fusion method {method!r}: use mean, weighted or majority")
