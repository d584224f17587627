"""Turn one DICOM series into a :class:`~operators.values.SeriesVolume`.

Geometry comes from the Image Plane Module (PS3.3 C.7.6.2): Image Orientation (Patient)
gives the row and column cosines, Image Position (Patient) the centre of the first voxel
of each slice, Pixel Spacing the row then column spacing. Slices are sorted by the
projection of their position on the normal (row x column), never by Instance Number or
file name, and the slice spacing is measured from those positions: Slice Thickness
(0018,0050) is the thickness of the slab, not the distance between slices.

Everything that would make the volume wrong is refused before any pixel is decoded: a
single slice, orientations that differ between slices, oblique planes or gantry tilt,
two slices at one position, missing slices, uneven spacing, slices of different sizes,
and a volume that does not fit the memory budget. Pixel values are the stored values
through the Modality LUT (PS3.3 C.11.1: Rescale Slope and Intercept, or a Modality LUT
Sequence), as float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, pixel_array

from operators.dicom_input.headers import plain_value
from operators.dicom_input.loader import DicomInstance, DicomSeries
from operators.dicom_input.selection import SelectedSeries
from operators.errors import GeometryError, PixelDataError, VolumeTooLargeError
from operators.geometry import VoxelGeometry
from operators.values import SeriesVolume

AXIS_TOLERANCE = 1e-3
"""Largest deviation of a direction cosine from a patient axis still taken as aligned."""
ORIENTATION_TOLERANCE = 1e-4
"""Largest difference between the cosines of two slices of one series."""
POSITION_TOLERANCE_MM = 0.01
"""Absolute tolerance on positions and spacings (DS values carry ~6 significant digits)."""
SPACING_RELATIVE_TOLERANCE = 0.01
"""Spacing may vary by this fraction of the median spacing (or by the absolute tolerance)."""
GAP_FACTOR = 1.5
"""A step larger than this multiple of the median spacing means slices are missing."""

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _uid(series: DicomSeries) -> str:
    return series.series_instance_uid


def _check_headers(series: DicomSeries, instances: Sequence[DicomInstance]) -> None:
    """Per-instance attributes that must be present and equal across the series."""
    if len(instances) < 2:
        raise GeometryError(
            f"series {_uid(series)} has a single slice ({instances[0].path if instances else '-'})"
            "; a volume needs at least 2 slices"
        )
    for inst in instances:
        if inst.number_of_frames > 1:
            raise GeometryError(
                f"multi-frame images are not supported: {inst.path} of series {_uid(series)} "
                f"has {inst.number_of_frames} frames"
            )
        for name, value in (
            ("ImageOrientationPatient", inst.image_orientation),
            ("ImagePositionPatient", inst.image_position),
            ("PixelSpacing", inst.pixel_spacing),
        ):
            if value is None:
                raise GeometryError(f"{inst.path} of series {_uid(series)} has no valid {name}")
        if not inst.has_pixel_data:
            raise PixelDataError(f"{inst.path} of series {_uid(series)} has no pixel data")
    first = instances[0]
    for inst in instances[1:]:
        if (inst.rows, inst.columns) != (first.rows, first.columns):
            raise GeometryError(
                f"slices of series {_uid(series)} differ in size: {first.rows}x{first.columns} "
                f"in {first.path}, {inst.rows}x{inst.columns} in {inst.path}"
            )
        assert inst.pixel_spacing is not None and first.pixel_spacing is not None
        if not np.allclose(inst.pixel_spacing, first.pixel_spacing, rtol=0, atol=1e-4):
            raise GeometryError(
                f"slices of series {_uid(series)} differ in PixelSpacing: "
                f"{list(first.pixel_spacing)} in {first.path}, "
                f"{list(inst.pixel_spacing)} in {inst.path}"
            )
        assert inst.image_orientation is not None and first.image_orientation is not None
        if not np.allclose(
            inst.image_orientation, first.image_orientation, rtol=0, atol=ORIENTATION_TOLERANCE
        ):
            raise GeometryError(
                f"slices of series {_uid(series)} differ in ImageOrientationPatient "
                f"({first.path} and {inst.path})"
            )
        if inst.frame_of_reference_uid != first.frame_of_reference_uid:
            raise GeometryError(
                f"slices of series {_uid(series)} are in different frames of reference "
                f"({first.path} and {inst.path})"
            )
    if not first.frame_of_reference_uid:
        raise GeometryError(f"series {_uid(series)} has no FrameOfReferenceUID ({first.path})")


def _directions(series: DicomSeries, iop: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    row, column = np.asarray(iop[:3], float), np.asarray(iop[3:6], float)
    if min(np.linalg.norm(row), np.linalg.norm(column)) < 0.5:
        raise GeometryError(f"series {_uid(series)} has a degenerate ImageOrientationPatient")
    row, column = row / np.linalg.norm(row), column / np.linalg.norm(column)
    # Nearest signed patient axis of each cosine: anything farther is an oblique plane.
    for vector in (row, column):
        axis = np.zeros(3)
        axis[int(np.argmax(np.abs(vector)))] = np.sign(vector[np.argmax(np.abs(vector))])
        if np.abs(vector - axis).max() > AXIS_TOLERANCE:
            raise GeometryError(
                f"oblique or tilted series are not supported: series {_uid(series)} has "
                f"ImageOrientationPatient {[round(v, 4) for v in iop]}, not aligned with "
                "the patient axes"
            )
    if abs(row @ column) > AXIS_TOLERANCE:
        raise GeometryError(f"series {_uid(series)}: row and column cosines are not orthogonal")
    # Remove the residual (<= 1e-3) non-orthogonality that VoxelGeometry would refuse.
    column = column - (row @ column) * row
    return row, column / np.linalg.norm(column)


def _sorted_geometry(
    series: DicomSeries, instances: Sequence[DicomInstance]
) -> tuple[list[DicomInstance], VoxelGeometry, list[str]]:
    """Sort along the normal, check positions and spacing, and build the geometry."""
    first = instances[0]
    assert first.image_orientation is not None and first.pixel_spacing is not None
    row, column = _directions(series, first.image_orientation)
    normal = np.cross(row, column)
    positions = np.asarray([inst.image_position for inst in instances], dtype=np.float64)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    ordered = [instances[int(i)] for i in order]
    positions, along = positions[order], along[order]

    steps = np.diff(along)
    duplicates = np.flatnonzero(steps < POSITION_TOLERANCE_MM)
    if duplicates.size:
        index = int(duplicates[0])
        raise GeometryError(
            f"duplicate slice position in series {_uid(series)}: {ordered[index].path} and "
            f"{ordered[index + 1].path} are both at {along[index]:.3f} mm along the normal"
        )
    # Gantry tilt: positions drift within the slice plane as the table moves.
    offsets = positions - positions[0] - np.outer(along - along[0], normal)
    drift = np.linalg.norm(offsets, axis=1)
    tolerance = POSITION_TOLERANCE_MM + AXIS_TOLERANCE * np.abs(along - along[0])
    if (drift > tolerance).any():
        worst = int(np.argmax(drift - tolerance))
        raise GeometryError(
            f"oblique or tilted series are not supported: slice positions of series "
            f"{_uid(series)} are not along the slice normal (gantry tilt?): {ordered[worst].path}"
            f" is {drift[worst]:.3f} mm off the line"
        )
    median = float(np.median(steps))
    gaps = np.flatnonzero(steps > GAP_FACTOR * median)
    if gaps.size:
        index = int(gaps[0])
        raise GeometryError(
            f"missing slice(s) in series {_uid(series)}: a gap of {steps[index]:.3f} mm between "
            f"{ordered[index].path} and {ordered[index + 1].path} where slices are "
            f"{median:.3f} mm apart ({gaps.size} gap(s) in all)"
        )
    allowed = max(POSITION_TOLERANCE_MM, SPACING_RELATIVE_TOLERANCE * median)
    if np.abs(steps - median).max() > allowed:
        raise GeometryError(
            f"inconsistent slice spacing in series {_uid(series)}: steps from "
            f"{steps.min():.3f} to {steps.max():.3f} mm (median {median:.3f} mm)"
        )
    slice_spacing = float((along[-1] - along[0]) / (len(along) - 1))
    row_spacing, column_spacing = first.pixel_spacing
    assert first.rows is not None and first.columns is not None
    geometry = VoxelGeometry(
        shape=(len(ordered), first.rows, first.columns),
        spacing=(slice_spacing, float(row_spacing), float(column_spacing)),
        origin=(float(positions[0][0]), float(positions[0][1]), float(positions[0][2])),
        row_direction=(float(row[0]), float(row[1]), float(row[2])),
        column_direction=(float(column[0]), float(column[1]), float(column[2])),
    )
    warnings = []
    thickness = series.attribute("SliceThickness")
    if (
        isinstance(thickness, float | int)
        and thickness > 0
        and abs(thickness - slice_spacing) > 0.1 * slice_spacing
    ):
        warnings.append(
            f"SliceThickness {thickness} mm differs from the slice spacing "
            f"{slice_spacing:.3f} mm (overlapping or spaced slices)"
        )
    return ordered, geometry, warnings


def _decode_into(out: np.ndarray, inst: DicomInstance, series: DicomSeries) -> Dataset:
    """Decode one file into ``out`` (rows x columns, float32) and return its header."""
    where = f"{inst.path} of series {_uid(series)}"
    try:
        ds = pydicom.dcmread(inst.path, force=False)
    except Exception as exc:
        raise PixelDataError(f"cannot re-read {where}: {type(exc).__name__}: {exc}") from None
    if str(ds.get("SOPInstanceUID", "")) != inst.sop_instance_uid:
        raise PixelDataError(f"{where} changed since it was scanned")
    try:
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
    except Exception as exc:  # wrong VR, garbage or several values (found by fuzzing)
        raise PixelDataError(
            f"{where} has a malformed SamplesPerPixel, RescaleSlope or RescaleIntercept "
            f"({type(exc).__name__})"
        ) from None
    if samples != 1:
        raise PixelDataError(
            f"{where} has {samples} samples per pixel; only grayscale is supported"
        )
    try:
        stored = pixel_array(ds)
    except Exception as exc:
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", "") or syntax
        raise PixelDataError(
            f"cannot decode the pixel data of {where} (transfer syntax {name}): {exc}"
        ) from None
    if stored.shape != out.shape:
        raise PixelDataError(f"{where} decodes to {stored.shape}, expected {out.shape}")
    if "ModalityLUTSequence" in ds:
        try:
            out[...] = apply_modality_lut(stored, ds)
        except Exception as exc:
            raise PixelDataError(f"{where} has a malformed Modality LUT: {exc}") from None
    else:
        out[...] = stored
        # In place on the float32 slice: no float64 temporary per slice.
        if slope != 1.0:
            out *= np.float32(slope)
        if intercept != 0.0:
            out += np.float32(intercept)
    for keyword in _PIXEL_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    return ds


def series_to_volume(
    series: DicomSeries | SelectedSeries, memory_budget_bytes: int
) -> SeriesVolume:
    """Check the geometry of ``series`` and decode it into a float32 volume.

    Raises :class:`GeometryError`, :class:`VolumeTooLargeError` (before decoding) or
    :class:`PixelDataError`, each naming the series UID and, where one is to blame, the
    file.
    """
    selection_name = ""
    if isinstance(series, SelectedSeries):
        selection_name, series = series.name, series.series
    if not series.is_image:
        raise PixelDataError(f"series {_uid(series)} holds no images ({series.non_image_reason})")
    instances = series.image_instances
    _check_headers(series, instances)
    rows, columns = instances[0].rows or 0, instances[0].columns or 0
    needed = len(instances) * rows * columns * np.dtype(np.float32).itemsize
    if needed > memory_budget_bytes:
        raise VolumeTooLargeError(
            f"series {_uid(series)} needs {needed / 2**20:.1f} MiB as float32 "
            f"({len(instances)} x {rows} x {columns}), over the memory budget of "
            f"{memory_budget_bytes / 2**20:.1f} MiB"
        )
    ordered, geometry, warnings = _sorted_geometry(series, instances)
    skipped = len(series.instances) - len(instances)
    if skipped:
        warnings.append(f"{skipped} non-image instance(s) in the series were ignored")

    voxels = np.empty(geometry.shape, dtype=np.float32)
    datasets = tuple(_decode_into(voxels[k], inst, series) for k, inst in enumerate(ordered))
    first = datasets[0]
    return SeriesVolume(
        voxels=voxels,
        geometry=geometry,
        modality=series.modality,
        study_instance_uid=series.study_instance_uid,
        series_instance_uid=series.series_instance_uid,
        frame_of_reference_uid=instances[0].frame_of_reference_uid,
        series_description=str(plain_value(first, "SeriesDescription") or ""),
        source_datasets=datasets,
        selection_name=selection_name,
        warnings=tuple(warnings),
    )
