"""Sliding-window stitching, resampling and the uncertainty decomposition."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from models.inference import (
    SlidingWindowSettings,
    _run_boxes,
    back_to_native,
    fuse,
    sliding_window_probability,
)
from models.manifest import Normalisation
from models.resampling import resample, resample_box, resampled_shape
from models.screen import WindowScreen, WindowTally, brightness, lumen_floor
from models.uncertainty import binary_entropy, study_uncertainty_score, voxel_uncertainty
from models.windows import gaussian_importance, window_starts


def _pointwise(batch: np.ndarray) -> np.ndarray:
    """A 'network' whose vessel logit is its input: the stitched result must be sigmoid(x)."""
    return np.concatenate([np.zeros_like(batch), batch], axis=1)


@pytest.mark.parametrize("shape", [(20, 33, 41), (7, 9, 50), (48, 48, 48)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_sliding_window_stitches_without_seams(shape: tuple[int, int, int], overlap: float) -> None:
    volume = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    settings = SlidingWindowSettings(overlap=overlap, batch_size=3)
    result = sliding_window_probability(_pointwise, volume, (16, 16, 16), settings)
    assert result.shape == shape
    np.testing.assert_allclose(result, 1 / (1 + np.exp(-volume)), atol=1e-6)


@pytest.mark.requirement("SRS-084")
def test_the_lumen_screen_runs_only_windows_that_can_hold_a_lumen() -> None:
    """Dark windows are skipped (probability 0); every window with a lumen is run as before."""
    spec = Normalisation()
    floor = lumen_floor(spec, "CT")
    assert floor == pytest.approx((100.0 - spec.ct_centre_hu) / spec.ct_width_hu)
    assert lumen_floor(spec, "MR") == pytest.approx(np.log2(1.5) * spec.mr_log2_scale)
    rng = np.random.default_rng(4)
    tissue = rng.normal(0.0, 0.02, size=(40, 64, 64)).astype(np.float32)  # 40 +/- 8 HU
    volume = tissue.copy()
    volume[5:9, 40:44, 40:60] = 0.7  # one lumen of 320 HU in one corner
    calls = []

    def counting(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return _pointwise(batch)

    settings = SlidingWindowSettings(overlap=0.25, batch_size=1, screen=True)
    tally = WindowTally()
    screen = WindowScreen(brightness(volume), floor)
    result = sliding_window_probability(counting, volume, (16, 16, 16), settings, screen, tally)
    plain = sliding_window_probability(_pointwise, volume, (16, 16, 16), settings)
    assert tally.run == sum(calls) and 0 < tally.run < tally.run + tally.skipped
    assert tally.skipped_fraction > 0.5
    lumen = volume >= 0.7
    np.testing.assert_allclose(result[lumen], plain[lumen], atol=1e-6)  # the lumen is untouched
    assert result[30:, :16, :16].max() == 0.0  # far from it nothing was run


def test_flips_are_undone() -> None:
    volume = np.random.default_rng(2).normal(size=(16, 20, 24)).astype(np.float32)
    settings = SlidingWindowSettings(flips=((0,), (1,), (2,)))
    result = sliding_window_probability(_pointwise, volume, (16, 16, 16), settings)
    np.testing.assert_allclose(result, 1 / (1 + np.exp(-volume)), atol=1e-6)


def test_confident_background_gives_probability_zero_without_a_warning() -> None:
    # A logit difference below about -88 overflows exp in float32; the probability is 0.
    volume = np.full((16, 16, 16), -500.0, dtype=np.float32)
    volume[8, 8, 8] = 500.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = sliding_window_probability(_pointwise, volume, (8, 8, 8), SlidingWindowSettings())
    assert result[8, 8, 8] == 1.0 and result.sum() == 1.0


def test_resampling_round_trip_keeps_positions() -> None:
    # A linear ramp along each axis is reproduced exactly by linear interpolation.
    z, y, x = np.meshgrid(np.arange(30), np.arange(40), np.arange(50), indexing="ij")
    ramp = (0.7 * z + 0.2 * y + 0.1 * x).astype(np.float32)
    source, target = (1.2, 0.5, 0.5), (0.6, 0.6, 0.6)
    coarse = resample(ramp, source, target)
    assert coarse.shape == resampled_shape(ramp.shape, source, target)
    # voxel (k, j, i) of the target grid sits at (k*0.6/1.2, j*0.6/0.5, i*0.6/0.5) in source indices
    k, j, i = 10, 7, 9
    expected = 0.7 * k * 0.5 + 0.2 * j * 1.2 + 0.1 * i * 1.2
    assert coarse[k, j, i] == pytest.approx(expected, abs=1e-4)
    back = resample(coarse, target, source, shape=ramp.shape)
    np.testing.assert_allclose(back[:-2, :-2, :-2], ramp[:-2, :-2, :-2], atol=1e-3)


def _scipy_trilinear(volume: np.ndarray, source, target, shape) -> np.ndarray:
    scale = [t / s for s, t in zip(source, target, strict=True)]
    return ndimage.affine_transform(
        volume, scale, output_shape=shape, order=1, mode="nearest", prefilter=False
    )


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ((1.0, 0.5, 0.5), (0.6, 0.6, 0.6)),
        ((0.6, 0.6, 0.6), (1.0, 0.5, 0.5)),
        ((0.7, 0.43, 0.9), (0.5,) * 3),
    ],
)
def test_separable_resampling_is_scipys_trilinear(source, target) -> None:
    """Axis by axis gives scipy's trilinear values, also on a sub-box and past the edge."""
    volume = np.random.default_rng(5).normal(size=(23, 31, 17)).astype(np.float32)
    shape = resampled_shape(volume.shape, source, target)
    np.testing.assert_allclose(
        resample(volume, source, target), _scipy_trilinear(volume, source, target, shape), atol=1e-6
    )
    wider = (shape[0] + 3, shape[1] + 1, shape[2] + 2)  # beyond the last voxel: edge value
    expected = _scipy_trilinear(volume, source, target, wider)
    np.testing.assert_allclose(resample(volume, source, target, wider), expected, atol=1e-6)
    box = (slice(2, 9), slice(0, 5), slice(4, wider[2]))
    np.testing.assert_allclose(resample_box(volume, source, target, box), expected[box], atol=1e-6)


def _whole_volume_blend(volume: np.ndarray, screen: WindowScreen) -> np.ndarray:
    """The definition, on a (40, 70, 64) volume in 16^3 windows at overlap 0.25: every
    window adds its weight everywhere, the run ones their probability."""
    importance = gaussian_importance((16, 16, 16), SlidingWindowSettings().sigma_scale)
    accum, weight = np.zeros_like(volume), np.zeros_like(volume)
    starts = [
        range(0, 40 - 16 + 1, 12),
        [*range(0, 70 - 16 + 1, 12), 54],
        range(0, 64 - 16 + 1, 12),
    ]
    for z in starts[0]:
        for y in starts[1]:
            for x in starts[2]:
                window = (slice(z, z + 16), slice(y, y + 16), slice(x, x + 16))
                weight[window] += importance
                if screen.may_hold_lumen(window):
                    accum[window] += importance / (1 + np.exp(-volume[window]))
    return accum / weight


def test_sparse_blending_and_return_equal_the_whole_volume_computation() -> None:
    """Skipped windows far from run ones are not accumulated; the result is the same."""
    rng = np.random.default_rng(6)
    volume = rng.normal(0.0, 0.02, size=(40, 70, 64)).astype(np.float32)
    volume[20:24, 50:54, 30:50] = 0.7
    patch, settings = (16, 16, 16), SlidingWindowSettings(overlap=0.25, screen=True)
    screen = WindowScreen(brightness(volume), lumen_floor(Normalisation(), "CT"))
    result = sliding_window_probability(_pointwise, volume, patch, settings, screen)
    np.testing.assert_allclose(result, _whole_volume_blend(volume, screen), atol=1e-6)
    source, native = (0.6, 0.6, 0.6), (1.0, 0.5, 0.5)
    shape = (25, 85, 77)
    boxes = [(slice(12, 40), slice(36, 70), slice(24, 64))]  # where ``result`` is not 0
    assert (
        result[:12].max() == 0.0 and result[:, :36].max() == 0.0 and result[:, :, :24].max() == 0.0
    )
    np.testing.assert_allclose(
        back_to_native(result, boxes, source, native, shape),
        _scipy_trilinear(result, source, native, shape),
        atol=1e-6,
    )


def test_overlapping_run_boxes_are_divided_once() -> None:
    """Scattered lumens give run boxes that overlap; each voxel is still divided once."""
    rng = np.random.default_rng(6)
    volume = rng.normal(0.0, 0.02, size=(40, 70, 64)).astype(np.float32)
    for lumen in [
        np.s_[20:24, 50:54, 30:50],
        np.s_[2:4, 2:4, 2:40],
        np.s_[30:32, 10:12, 50:60],
        np.s_[10:12, 30:32, 5:8],
    ]:
        volume[lumen] = 0.7
    settings = SlidingWindowSettings(overlap=0.25, screen=True)
    screen = WindowScreen(brightness(volume), lumen_floor(Normalisation(), "CT"))
    starts = [window_starts(n, 16, settings.overlap) for n in volume.shape]
    run = [
        (z, y, x)
        for z in starts[0]
        for y in starts[1]
        for x in starts[2]
        if screen.may_hold_lumen((slice(z, z + 16), slice(y, y + 16), slice(x, x + 16)))
    ]
    boxes = _run_boxes(run, (16, 16, 16), volume.shape)
    assert any(
        all(max(a[i].start, b[i].start) < min(a[i].stop, b[i].stop) for i in range(3))
        for k, a in enumerate(boxes)
        for b in boxes[k + 1 :]
    ), "the layout no longer makes overlapping boxes: the test would prove nothing"
    result = sliding_window_probability(_pointwise, volume, (16, 16, 16), settings, screen)
    np.testing.assert_allclose(result, _whole_volume_blend(volume, screen), atol=1e-6)


@pytest.mark.parametrize("shape", [(256, 40, 30), (37, 50, 20), (5, 30, 30)])
def test_brightness_in_slabs_equals_the_whole_volume_filter(shape: tuple[int, int, int]) -> None:
    volume = np.random.default_rng(7).normal(size=shape).astype(np.float32)
    whole = ndimage.gaussian_filter(volume, 1.0, mode="nearest")
    for workers in (1, 2, 3):
        np.testing.assert_array_equal(brightness(volume, workers=workers), whole)


def test_uncertainty_decomposition() -> None:
    rng = np.random.default_rng(3)
    members = rng.random((4, 6, 7, 8)).astype(np.float32)
    maps = voxel_uncertainty(members)
    np.testing.assert_allclose(maps.mean_probability, members.mean(0), atol=1e-6)
    np.testing.assert_allclose(maps.predictive_entropy, binary_entropy(members.mean(0)), atol=1e-6)
    np.testing.assert_allclose(
        maps.predictive_entropy, maps.expected_entropy + maps.mutual_information, atol=1e-5
    )
    assert maps.mutual_information.min() >= 0.0
    assert maps.predictive_entropy.max() <= np.log(2) + 1e-6


def test_agreeing_members_have_no_epistemic_uncertainty() -> None:
    agreeing = np.repeat(np.random.default_rng(4).random((1, 5, 5, 5)), 3, axis=0)
    disagreeing = np.stack([np.full((5, 5, 5), v, np.float32) for v in (0.05, 0.5, 0.95)])
    assert voxel_uncertainty(agreeing.astype(np.float32)).mutual_information.max() < 1e-5
    # masks: empty, full, full -> pair Dices 0, 0, 1 -> disagreement 2/3
    assert study_uncertainty_score(disagreeing) == pytest.approx(2 / 3)
    assert study_uncertainty_score(agreeing.astype(np.float32)) == pytest.approx(0.0)
    halves = np.zeros((2, 4, 4, 4), np.float32)
    halves[0, :2], halves[1, 2:] = 1.0, 1.0  # disjoint masks
    assert study_uncertainty_score(halves) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="members >= 2"):
        study_uncertainty_score(halves[:1])


def test_fusion_methods() -> None:
    members = np.stack([np.full((2, 2, 2), v, np.float32) for v in (0.2, 0.6, 0.9)])
    assert fuse(members, "mean")[0, 0, 0] == pytest.approx(0.5666, abs=1e-3)
    assert fuse(members, "majority")[0, 0, 0] == pytest.approx(2 / 3)
    assert fuse(members, "weighted", [2.0, 1.0, 1.0])[0, 0, 0] == pytest.approx(0.475)
    with pytest.raises(ValueError, match="one weight per member"):
        fuse(members, "weighted", [1.0])
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse(members, "median")


@pytest.mark.parametrize("method", ["mean", "weighted", "majority"])
def test_maps_computed_where_members_are_non_zero_equal_the_whole_volumes(method: str) -> None:
    """The fusion skips voxels where every member is 0 (most of a screened study)."""
    from operators.segmentation.fusion import _voxel_maps, nonzero_boxes, voxel_maps

    rng = np.random.default_rng(7)
    members = np.zeros((3, 70, 40, 50), dtype=np.float32)
    members[:, 5:20, 10:30, 5:25] = rng.random((3, 15, 20, 20))
    members[1, 60, 39, 49] = 0.7  # a lone voxel in a far corner, one member only
    boxes = nonzero_boxes(members)
    assert sum(int(np.prod([s.stop - s.start for s in box[1:]])) for box in boxes) < 40 * 50
    args = (method, [1.0, 2.0, 1.0], 0.5, 0.84)
    sparse, whole = voxel_maps(members, *args), _voxel_maps(members, *args)
    assert sparse.keys() == whole.keys()
    for name, value in whole.items():
        np.testing.assert_array_equal(sparse[name], value, err_msg=name)
