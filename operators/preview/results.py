"""A run's own outputs read back as arrays for pictures: the SEG and the uncertainty map.

highdicom reads both (``get_volume``: frames sorted by position into a [slice, row,
column] volume with its geometry); the SEG, and the source series when given, are then
brought onto the uncertainty map's grid (``match_geometry``), which has one frame per
source slice while a SEG may omit empty frames. Nothing is resampled: our outputs lie
on the source grid, and a file that does not is refused rather than pictured wrongly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from operators.preview.render import PreviewError, ResultVolumes

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
PARAMETRIC_MAP_STORAGE = "1.2.840.10008.5.1.4.1.1.30"
# highdicom reports unreadable or inconsistent files with any of these.
_READ_ERRORS = (OSError, ValueError, TypeError, KeyError, AttributeError, RuntimeError,
                InvalidDicomError)  # fmt: skip


def _dataset(path: Path, sop_class: str, what: str) -> pydicom.Dataset:
    try:
        dataset = pydicom.dcmread(path)
    except _READ_ERRORS as error:
        raise PreviewError(f"{path.name}: cannot read the {what}: {error}") from error
    if str(dataset.get("SOPClassUID", "")) != sop_class:
        raise PreviewError(f"{path.name} is not a {what} (SOP Class {sop_class} expected)")
    return dataset


def _on_grid(volume: hd.Volume, grid: hd.Volume, what: str, name: str) -> hd.Volume:
    if volume.geometry_equal(grid):
        return volume
    try:
        return volume.match_geometry(grid)
    except (ValueError, RuntimeError) as error:
        detail = f"{name}: the {what} is not on the uncertainty map's grid: {error}"
        raise PreviewError(detail) from error


def _quantity(parametric_map: pydicom.Dataset) -> str:
    """The map's quantity from its Content Label (``MI_MAP``, ``PE_MAP_REVIEW``: MI, PE)."""
    label = str(parametric_map.get("ContentLabel", "") or "")
    return label.split("_", 1)[0] or "uncertainty"


def read_result_volumes(
    seg_path: Path, map_path: Path, source_files: Sequence[Path] = ()
) -> ResultVolumes:
    """The vessel SEG, the uncertainty map and (given ``source_files``, the series the
    run read) the source image on the map's grid; :class:`PreviewError` naming the file
    that cannot be read or does not fit."""
    seg_dataset = _dataset(seg_path, SEGMENTATION_STORAGE, "Segmentation")
    map_dataset = _dataset(map_path, PARAMETRIC_MAP_STORAGE, "Parametric Map")
    try:
        # float32 as stored: highdicom's default float64 doubles a large study's map in memory
        parametric_map = hd.pm.ParametricMap.from_dataset(map_dataset, copy=False)
        grid = parametric_map.get_volume(dtype=np.float32)
    except _READ_ERRORS as error:
        raise PreviewError(f"{map_path.name}: cannot build the map's volume: {error}") from error
    try:
        segmentation = hd.seg.Segmentation.from_dataset(seg_dataset, copy=False)
        seg_volume = segmentation.get_volume(combine_segments=True)
    except _READ_ERRORS as error:
        raise PreviewError(f"{seg_path.name}: cannot build the SEG's volume: {error}") from error
    mask = _on_grid(seg_volume, grid, "SEG", seg_path.name).array > 0
    background = None
    if source_files:
        try:
            datasets = [pydicom.dcmread(p) for p in source_files]
            series = hd.get_volume_from_series(datasets, dtype=np.float32)
        except _READ_ERRORS as error:
            raise PreviewError(f"the source series cannot be read as a volume: {error}") from error
        background = _on_grid(series, grid, "source series", source_files[0].parent.name).array
    return ResultVolumes(
        mask=mask,
        uncertainty=np.asarray(grid.array, dtype=np.float32),  # no copy: already float32
        spacing_mm=tuple(float(s) for s in grid.spacing),  # type: ignore[arg-type]
        background=None if background is None else np.asarray(background, dtype=np.float32),
        uncertainty_name=_quantity(map_dataset),
    )
