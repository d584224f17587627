"""Ensemble inference over a whole volume with ONNX Runtime (numpy only, no torch).

Per member: modality-aware normalisation on the native grid (``models.normalisation``),
resampling to the member's spacing, sliding-window inference with Gaussian blending,
optional test-time flips, softmax, and resampling of the vessel probability back to the
native grid. The builder evaluates the exported ONNX members through this same code, so
the metrics in the manifest describe what the appliance actually runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from models.loader import LoadedEnsemble, LoadedMember
from models.manifest import Normalisation
from models.normalisation import normalisation_reference, normalise, resolve_modality
from models.resampling import Box, Spacing, resample, resample_box
from models.screen import WindowScreen, WindowTally, brightness, lumen_floor
from models.windows import SlidingWindowSettings, gaussian_importance, window_starts

Predictor = Callable[[np.ndarray], np.ndarray]


def _overlapping(starts: Sequence[int], patch: int) -> np.ndarray:
    """(n, n) bool: which windows along one axis share a voxel."""
    positions = np.asarray(starts)
    return np.abs(positions[:, None] - positions[None, :]) < patch


def _merge_along(boxes: list[list[int]], axis: int) -> list[list[int]]:
    """Merge boxes ([z0, z1, y0, y1, x0, x1]) that touch along ``axis`` and match elsewhere."""
    low, high = 2 * axis, 2 * axis + 1
    merged: list[list[int]] = []
    for box in sorted(boxes, key=lambda b: (*b[:low], *b[high + 1 :], b[low])):
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and previous[:low] + previous[high + 1 :] == box[:low] + box[high + 1 :]
            and box[low] <= previous[high]
        ):
            previous[high] = max(previous[high], box[high])
        else:
            merged.append(list(box))
    return merged


def _run_boxes(
    corners: Sequence[tuple[int, int, int]], patch: Sequence[int], shape: Sequence[int]
) -> list[Box]:
    """Boxes (within ``shape``) covering the windows at ``corners``, few and tight.

    One box per row of windows along x, then rows that touch are merged along y and along
    z: a fully run volume is one box, a sparse one stays close to its windows.
    """
    rows: dict[tuple[int, int], list[int]] = {}
    for z, y, x in corners:
        rows.setdefault((z, y), []).append(x)
    boxes = [
        [
            z,
            min(z + patch[0], shape[0]),
            y,
            min(y + patch[1], shape[1]),
            min(xs),
            min(max(xs) + patch[2], shape[2]),
        ]
        for (z, y), xs in rows.items()
    ]
    boxes = _merge_along(_merge_along(boxes, 1), 0)
    return [(slice(b[0], b[1]), slice(b[2], b[3]), slice(b[4], b[5])) for b in boxes]


def _blend(
    predict: Predictor,
    volume: np.ndarray,
    patch: Sequence[int],
    settings: SlidingWindowSettings,
    screen: WindowScreen | None,
    tally: WindowTally | None,
) -> tuple[np.ndarray, list[Box]]:
    """Blended probability over ``volume`` and the boxes outside which it is 0.

    Only the voxels of run windows can be non-zero; there the blending weight is the sum
    over every window covering the voxel, run or skipped, and those all overlap a run
    window. So only run windows and their neighbours are accumulated: memory pages of a
    large, mostly skipped volume are never touched.
    """
    pads = [(0, max(0, p - n)) for n, p in zip(volume.shape, patch, strict=True)]
    padded = np.pad(volume, pads, mode="edge") if any(p[1] for p in pads) else volume
    importance = gaussian_importance(patch, settings.sigma_scale)
    starts = [
        window_starts(n, p, settings.overlap) for n, p in zip(padded.shape, patch, strict=True)
    ]
    grid = np.ones([len(s) for s in starts], dtype=bool)  # which windows are run
    pz, py, px = patch

    def corner(index: Sequence[int] | np.ndarray) -> tuple[int, int, int]:
        return (starts[0][int(index[0])], starts[1][int(index[1])], starts[2][int(index[2])])

    if screen is not None:
        for cell in np.ndindex(grid.shape):
            z, y, x = corner(cell)
            grid[cell] = screen.may_hold_lumen(
                (slice(z, z + pz), slice(y, y + py), slice(x, x + px))
            )
    run = [corner(index) for index in np.argwhere(grid)]
    if tally is not None:
        tally.run += len(run)
        tally.skipped += grid.size - len(run)
    overlaps = [_overlapping(s, p).astype(np.int64) for s, p in zip(starts, patch, strict=True)]
    near_run = np.einsum("ia,jb,kc,abc->ijk", *overlaps, grid.astype(np.int64)) > 0
    accum = np.zeros(padded.shape, dtype=np.float32)
    weight = np.zeros(padded.shape, dtype=np.float32)
    for neighbour in np.argwhere(near_run & ~grid):
        z, y, x = corner(neighbour)
        weight[z : z + pz, y : y + py, x : x + px] += importance
    # One batch buffer and in-place products: a window's temporaries would cost as much
    # memory traffic as its accumulation.
    batch = np.empty((settings.batch_size, 1, pz, py, px), dtype=padded.dtype)
    for first in range(0, len(run), settings.batch_size):
        batch_corners = run[first : first + settings.batch_size]
        for slot, (z, y, x) in enumerate(batch_corners):
            batch[slot, 0] = padded[z : z + pz, y : y + py, x : x + px]
        probability = _vessel_probability(predict, batch[: len(batch_corners)], settings.flips)
        for (z, y, x), prob in zip(batch_corners, probability, strict=True):
            prob *= importance
            accum[z : z + pz, y : y + py, x : x + px] += prob
            weight[z : z + pz, y : y + py, x : x + px] += importance
    boxes = _run_boxes(run, patch, volume.shape)
    # Divided in place: outside the boxes no run window reached and accum is already 0.
    for box in boxes:
        # A box may hold voxels no window reached (weight 0, accum 0): those stay 0.
        np.maximum(weight[box], 1e-12, out=weight[box])
        np.divide(accum[box], weight[box], out=accum[box])
        weight[box] = 1.0  # boxes may overlap: a second division must leave the value
    return accum[: volume.shape[0], : volume.shape[1], : volume.shape[2]], boxes


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
    return _blend(predict, volume, patch, settings, screen, tally)[0]


def _native_box(box: Box, member_shape: Sequence[int], ratio: Spacing, shape: Sequence[int]) -> Box:
    """The native voxels whose interpolation reads ``box`` of the member grid (a voxel wider).

    ``ratio`` is native spacing / member spacing: native index i reads member index i * ratio.
    """
    out = []
    for axis in range(3):
        low = max(0, int(np.floor((box[axis].start - 1) / ratio[axis])))
        if box[axis].stop >= member_shape[axis]:
            high = shape[axis]  # beyond the member grid the edge value continues
        else:
            high = min(shape[axis], int(np.ceil(box[axis].stop / ratio[axis])) + 1)
        out.append(slice(low, high))
    return (out[0], out[1], out[2])


def back_to_native(
    probability: np.ndarray,
    boxes: Sequence[Box],
    member_spacing: Spacing,
    spacing: Spacing,
    shape: Sequence[int],
) -> np.ndarray:
    """``resample(probability, member_spacing, spacing, shape)`` where it can be non-zero.

    ``probability`` is 0 outside ``boxes``; a native voxel none of whose neighbours lies in a
    box is 0 too, so only the native boxes that read them are interpolated.
    """
    native = np.zeros(tuple(shape), dtype=np.float32)
    ratio = (
        spacing[0] / member_spacing[0],
        spacing[1] / member_spacing[1],
        spacing[2] / member_spacing[2],
    )
    for box in boxes:
        target = _native_box(box, probability.shape, ratio, shape)
        native[target] = resample_box(probability, member_spacing, spacing, target)
    return native


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
    # exp overflows to inf below a difference of about -88, which gives exactly 0: right.
    with np.errstate(over="ignore"):
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
    return resample(normalised, spacing, member_spacing)


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
    probability, boxes = _blend(predict, prepared, patch, settings, screen, tally)
    return back_to_native(probability, boxes, member_spacing, spacing, image.shape)


def ensemble_probabilities(
    ensemble: LoadedEnsemble,
    image: np.ndarray,
    spacing: Spacing,
    settings: SlidingWindowSettings | None = None,
    on_member_done: Callable[[str, float], None] | None = None,
    modality: str = "",
    tallies: dict[str, WindowTally] | None = None,
) -> np.ndarray:
    """Stack of the probabilities of the members run on ``modality``, (members, z, y, x).

    ``modality`` is the DICOM Modality ("CT", "MR"; "" for a NIfTI input, inferred from
    the values). Members sharing a spacing and normalisation share one prepared input
    (normalising and resampling a large volume costs seconds). ``on_member_done(name,
    seconds)`` is told how long each member took; ``tallies`` receives each member's count
    of sliding windows run and skipped, by member name.
    """
    settings = settings or SlidingWindowSettings()
    modality = resolve_modality(modality, image)
    members = ensemble.members_for(modality)
    stacked = np.empty((len(members), *image.shape), dtype=np.float32)
    prepared: dict[tuple[Spacing, Normalisation], np.ndarray] = {}
    bright: dict[tuple[Spacing, Normalisation], np.ndarray] = {}
    keys = [(m.member.input_spacing_mm, m.member.normalisation) for m in members]
    last_use = {key: index for index, key in enumerate(keys)}
    reference: float | None = None
    for index, loaded in enumerate(members):
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
