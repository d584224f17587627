"""Pictures of a result (operators/preview): the arrays they are drawn from, the pixels
the SEG overlay lands on, the heat scale, and the result files read back on one grid."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from operators.dicom_output import build_uncertainty_map, build_vessel_segmentation
from operators.preview import (
    PreviewError,
    ResultVolumes,
    axial_picture,
    mip_picture,
    png_bytes,
    telling_slices,
)
from operators.preview.render import (
    CAPTION_PX,
    EMPTY_FIELD,
    GAP_PX,
    HEAT_LUT,
    OUTLINE_RGB,
    PANEL_PX,
    SEG_RGB,
    depth_shaded,
    heat,
    outline,
)
from operators.preview.results import read_result_volumes
from operators.values import SeriesVolume
from service.http.console.overview import PictureCache
from synthetic.case import SyntheticCase
from synthetic.dicom_series import WrittenSeries
from tests.dicom_output_support import (  # the *_fixture names: the module's fixtures
    case_fixture,  # noqa: F401
    make_result,
    volumes_fixture,  # noqa: F401
    written_fixture,  # noqa: F401
)

SHAPE = (6, 20, 40)  # slices, rows, columns: a wide field shows the aspect is kept


def volumes_with_a_bar(background: bool) -> ResultVolumes:
    """A vessel bar in rows 8-11, columns 10-29 of slice 2, uncertainty on its border."""
    mask = np.zeros(SHAPE, dtype=bool)
    mask[2, 8:12, 10:30] = True
    uncertainty = np.zeros(SHAPE, dtype=np.float32)
    uncertainty[2, 7, 10:30] = 0.5  # just above the bar
    image = np.full(SHAPE, 40.0, dtype=np.float32) if background else None
    if image is not None:
        image[:, 0, 0] = 400.0  # something bright, so the window is not flat
    return ResultVolumes(mask, uncertainty, (2.0, 1.0, 1.0), image)


def pixels(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.convert("RGB"))


def left_panel_pixel(picture: Image.Image, row: int, column: int) -> np.ndarray:
    """The left panel's pixel over voxel (row, column) of the SHAPE grid."""
    factor = PANEL_PX / SHAPE[2]
    return pixels(picture)[CAPTION_PX + int((row + 0.5) * factor), int((column + 0.5) * factor)]


def test_mip_picture_is_two_panels_in_physical_proportion() -> None:
    picture = mip_picture(volumes_with_a_bar(background=True))
    panel_height = PANEL_PX * SHAPE[1] // SHAPE[2]  # 1 mm rows and columns: 2:1
    assert picture.width == 2 * PANEL_PX + GAP_PX
    assert picture.height >= CAPTION_PX + panel_height
    decoded = Image.open(io.BytesIO(png_bytes(picture)))
    assert (decoded.format, decoded.size) == ("PNG", picture.size)


@pytest.mark.requirement("SRS-086")
def test_the_seg_overlay_lands_where_the_mask_is() -> None:
    for background in (True, False):
        picture = mip_picture(volumes_with_a_bar(background))
        inside = left_panel_pixel(picture, 9, 20).astype(int)
        outside = left_panel_pixel(picture, 16, 20).astype(int)
        assert inside[0] > 150 and inside[0] > inside[1] + 80, (background, inside)
        if background:
            assert outside[0] == outside[1] == outside[2]  # plain grey: no overlay
        else:
            assert tuple(outside) == EMPTY_FIELD


def test_axial_picture_shows_the_mask_only_on_its_slice() -> None:
    volumes = volumes_with_a_bar(background=True)
    on, off = axial_picture(volumes, 2), axial_picture(volumes, 3)
    assert left_panel_pixel(on, 9, 20)[0] > left_panel_pixel(off, 9, 20)[0] + 60
    with pytest.raises(PreviewError, match="slice 6 is outside the volume's 6 slices"):
        axial_picture(volumes, 6)


def test_uncertainty_panel_has_the_heat_scale_and_the_seg_outline() -> None:
    picture = pixels(axial_picture(volumes_with_a_bar(background=False), 2))
    right = picture[CAPTION_PX:, PANEL_PX + GAP_PX :]
    colours = {tuple(c) for c in right.reshape(-1, 3)}
    assert OUTLINE_RGB in colours  # the bar's border
    assert tuple(HEAT_LUT[255]) in colours  # the hottest row, at the map's maximum
    assert tuple(HEAT_LUT[0]) in colours  # zero uncertainty


def test_heat_scale_and_outline_and_depth_shading() -> None:
    values = np.array([[0.0, 0.25, 0.5, np.nan]], dtype=np.float32)
    assert (heat(values, 0.5)[0] == HEAT_LUT[[0, 128, 255, 0]]).all()
    square = np.zeros((5, 5), dtype=bool)
    square[1:4, 1:4] = True
    ring = outline(square)
    assert ring.sum() == 8 and not ring[2, 2]
    mask = np.zeros((4, 1, 2), dtype=bool)
    mask[0, 0, 0] = mask[3, 0, 1] = True  # a near and a far vessel
    shaded = depth_shaded(mask).astype(int)
    assert tuple(shaded[0, 0]) == SEG_RGB and shaded[0, 0, 0] > shaded[0, 1, 0] > 0


def test_volumes_on_different_grids_are_refused() -> None:
    with pytest.raises(PreviewError, match=r"not on one grid: SEG \(2, 3, 3\), uncertainty"):
        ResultVolumes(np.zeros((2, 3, 3), bool), np.zeros((2, 3, 4), np.float32), (1, 1, 1))


def test_telling_slices_spread_over_the_vessel() -> None:
    mask = np.zeros((20, 2, 2), dtype=bool)
    mask[8:16, 0, 0] = True
    assert telling_slices(mask) == [10, 12, 14]
    assert telling_slices(np.zeros((8, 2, 2), dtype=bool)) == [2, 4, 6]


def written_result(case: SyntheticCase, volume: SeriesVolume, folder: Path) -> tuple[Path, Path]:
    """Our writers' SEG and uncertainty map of the phantom result, as files."""
    result = make_result(case, volume)
    seg_path, map_path = folder / "seg.dcm", folder / "map.dcm"
    build_vessel_segmentation(volume, result).save_as(seg_path, enforce_file_format=True)
    build_uncertainty_map(volume, result).save_as(map_path, enforce_file_format=True)
    return seg_path, map_path


def test_written_seg_and_map_read_back_aligned(
    case: SyntheticCase,
    volumes: dict[str, SeriesVolume],
    written: dict[str, WrittenSeries],
    tmp_path: Path,
) -> None:
    """Our writers' files (feet first: slices stored against the patient axis) come back on
    one grid: the map's values under the SEG and the source voxels under it are the ones
    the result had there."""
    volume = volumes["FFS"]
    result = make_result(case, volume)
    seg_path, map_path = written_result(case, volume, tmp_path)
    read = read_result_volumes(seg_path, map_path, written["FFS"].files)
    vessel = result.mask.astype(bool)
    assert read.mask.sum() == vessel.sum() > 0
    expected = np.sort(result.mutual_information[vessel])
    assert np.allclose(np.sort(read.uncertainty[read.mask]), expected)
    assert read.background is not None
    assert np.allclose(np.sort(read.background[read.mask]), np.sort(volume.voxels[vessel]))
    assert read.uncertainty_name == "MI"
    assert mip_picture(read).size[0] == 2 * PANEL_PX + GAP_PX


def test_a_file_of_another_kind_is_refused_by_name(
    volumes: dict[str, SeriesVolume], written: dict[str, WrittenSeries], tmp_path: Path
) -> None:
    source = written["HFS"].files[0]
    with pytest.raises(PreviewError, match=rf"{source.name} is not a Segmentation"):
        read_result_volumes(source, source)


def test_console_picture_cache_renders_a_series_once_until_its_files_change(
    case: SyntheticCase, volumes: dict[str, SeriesVolume], tmp_path: Path
) -> None:
    seg_path, map_path = written_result(case, volumes["HFS"], tmp_path)
    cache = PictureCache(entries=1)
    with ThreadPoolExecutor(4) as pool:  # a study page's four pictures asked at once
        answers = list(pool.map(lambda _: cache.pictures("job", seg_path, map_path), range(4)))
    assert all(answer is answers[0] for answer in answers)  # rendered once, shared
    assert next(iter(answers[0])) == "mip" and "slice-1" in answers[0]
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in answers[0].values())
    stat = map_path.stat()
    os.utime(map_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a re-run
    assert cache.pictures("job", seg_path, map_path) is not answers[0]
    with pytest.raises(PreviewError, match="is not a Parametric Map"):
        cache.pictures("job", seg_path, seg_path)
