"""Write a :class:`~synthetic.case.SyntheticCase` as a DICOM series, one file per slice.

CT cases become CT Image Storage instances (PS3.3 A.3), MR cases MR Image Storage
instances (PS3.3 A.4); :mod:`synthetic.dicom_attributes` fills the modules. Every UID,
date and file name is derived from the case seed, the study identity and the options, so
the same inputs give byte-identical files.

Geometry convention (PS3.3 C.7.6.2.1.1, Image Position and Orientation (Patient)):

* Head first supine (``HFS``, default): the file of slice ``k`` holds ``image[k]`` as is,
  ImagePositionPatient (IPP) is the LPS position of voxel ``(i=0, j=0, k)``, i.e.
  ``origin + k * dz * slice_direction``, ImageOrientationPatient (IOP) is
  ``row_direction + column_direction``, and InstanceNumber is ``k + 1``.
* Feet first supine (``FFS``, quirk ``feet_first``): as a real FFS axial scan, the row
  vector is reversed. The file of slice ``k`` holds ``image[k, :, ::-1]`` (pixel
  ``[r, c]`` is voxel ``(i=ncols-1-c, j=r, k)``), IPP is the LPS position of voxel
  ``(i=ncols-1, j=0, k)``, IOP is ``(-row_direction) + column_direction`` — so the slice
  normal points the other way — and InstanceNumber is ``nslices - k``, reversed
  relative to HFS.

In both cases PixelSpacing is ``[dy, dx]`` (row spacing first) and SliceThickness ``dz``.
A reader that sorts slices by the projection of IPP on the normal of IOP and maps pixels
through IPP/IOP recovers exactly the same LPS voxel values from HFS and FFS files.
InstanceNumber and file names carry no geometry a reader may rely on.

The optional localizer series (``localizer``) shares study and frame of reference and
holds two planes through the middle of the volume, sagittal then coronal, with rows
running head to feet (IOP column vector ``-slice_direction``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGLSLossless

from synthetic.case import Modality, SyntheticCase
from synthetic.dicom_attributes import (
    SOP_CLASS_BY_MODALITY,
    StudyIdentity,
    add_frame_of_reference_and_equipment,
    add_general_image,
    add_image_pixel,
    add_image_plane,
    add_modality_specific,
    add_patient_and_study,
    add_series,
    add_voi_lut,
    derived_uid,
)

__all__ = ["DicomQuirks", "StudyIdentity", "WrittenSeries", "write_series"]

# Localizer series take this offset from their axial series so that several series of
# one study written into one folder never share a SeriesNumber.
LOCALIZER_SERIES_OFFSET = 1000


class DicomQuirks(BaseModel):
    """Real-world variations a DICOM reader must cope with; all off by default."""

    model_config = ConfigDict(frozen=True)

    shuffle: bool = False
    """File names are random-looking UUIDs (no extension) written in a shuffled order."""
    feet_first: bool = False
    """PatientPosition FFS with a reversed row vector (see the module docstring)."""
    localizer: bool = False
    """Add a localizer series (ImageType ORIGINAL\\PRIMARY\\LOCALIZER) to the study."""
    jpeg_ls: bool = False
    """Encode with JPEG-LS Lossless (1.2.840.10008.1.2.4.80) instead of explicit VR LE."""
    rescale: bool = False
    """Non-identity RescaleSlope/Intercept that reproduce the case values exactly."""


_NO_QUIRKS = DicomQuirks()


class WrittenSeries(BaseModel):
    """What :func:`write_series` wrote. ``files[k]`` and ``sop_instance_uids[k]`` are slice k."""

    model_config = ConfigDict(frozen=True)

    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    series_number: int
    modality: Modality
    quirks: DicomQuirks
    transfer_syntax_uid: str
    files: tuple[Path, ...]
    sop_instance_uids: tuple[str, ...]
    localizer_series_instance_uid: str | None = None
    localizer_files: tuple[Path, ...] = ()
    localizer_sop_instance_uids: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Encoding:
    """How case values map to stored pixel values: value = stored * slope + intercept."""

    slope: float
    intercept: float
    signed: bool

    def to_stored(self, values: np.ndarray) -> np.ndarray:
        stored = np.rint((values.astype(np.float64) - self.intercept) / self.slope)
        low, high = (-32768, 32767) if self.signed else (0, 65535)
        if stored.min() < low or stored.max() > high:
            raise ValueError(
                f"values {values.min()}..{values.max()} do not fit 16-bit stored pixels "
                f"with slope {self.slope} and intercept {self.intercept}"
            )
        return stored.astype("<i2" if self.signed else "<u2")


@dataclass(frozen=True)
class _Slice:
    pixels: np.ndarray
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    thickness: float
    instance_number: int
    image_type: tuple[str, ...]


def _encoding(modality: Modality, rescale: bool) -> _Encoding:
    if modality is Modality.CT:
        # Many CT scanners store HU + 1024 as unsigned pixels.
        return _Encoding(1.0, -1024.0, False) if rescale else _Encoding(1.0, 0.0, True)
    return _Encoding(0.5, -10.0, False) if rescale else _Encoding(1.0, 0.0, False)


def _validate(case: SyntheticCase) -> Modality:
    try:
        modality = Modality(case.modality)
    except ValueError:
        raise ValueError(f"unknown modality {case.modality!r}; expected CT or MR") from None
    image = case.image
    if image.size == 0:
        raise ValueError("the case image is empty")
    if image.ndim != 3:
        raise ValueError(f"the case image must be 3D (k, j, i), got shape {image.shape}")
    if tuple(image.shape) != tuple(case.geometry.shape):
        raise ValueError(
            f"image shape {image.shape} differs from geometry shape {case.geometry.shape}"
        )
    if not np.issubdtype(image.dtype, np.integer):
        raise ValueError(f"image values must be integers (stored values), got {image.dtype}")
    if case.seed < 0:
        raise ValueError(f"case seed must be >= 0, got {case.seed}")
    return modality


def _voxel_lps(case: SyntheticCase, i: float, j: float, k: float) -> np.ndarray:
    return (case.geometry.affine_lps() @ np.array([i, j, k, 1.0]))[:3]


def _axial_slices(case: SyntheticCase, modality: Modality, feet_first: bool) -> list[_Slice]:
    geometry = case.geometry
    nz, _, nx = geometry.shape
    dz, dy, dx = geometry.spacing
    row = np.asarray(geometry.row_direction)
    column = np.asarray(geometry.column_direction)
    image_type = ("ORIGINAL", "PRIMARY", "AXIAL" if modality is Modality.CT else "OTHER")
    slices = []
    for k in range(nz):
        if feet_first:
            pixels, corner = case.image[k, :, ::-1], _voxel_lps(case, nx - 1, 0, k)
            orientation, instance = np.concatenate([-row, column]), nz - k
        else:
            pixels, corner = case.image[k], _voxel_lps(case, 0, 0, k)
            orientation, instance = np.concatenate([row, column]), k + 1
        slices.append(_Slice(pixels, corner, orientation, (dy, dx), dz, instance, image_type))
    return slices


def _localizer_slices(case: SyntheticCase) -> list[_Slice]:
    geometry = case.geometry
    nz, ny, nx = geometry.shape
    dz, dy, dx = geometry.spacing
    down = -np.asarray(geometry.slice_direction)
    image_type = ("ORIGINAL", "PRIMARY", "LOCALIZER")
    i_mid, j_mid = nx // 2, ny // 2
    sagittal = _Slice(
        pixels=case.image[::-1, :, i_mid],
        position=_voxel_lps(case, i_mid, 0, nz - 1),
        orientation=np.concatenate([np.asarray(geometry.column_direction), down]),
        pixel_spacing=(dz, dy),
        thickness=dx,
        instance_number=1,
        image_type=image_type,
    )
    coronal = _Slice(
        pixels=case.image[::-1, j_mid, :],
        position=_voxel_lps(case, 0, j_mid, nz - 1),
        orientation=np.concatenate([np.asarray(geometry.row_direction), down]),
        pixel_spacing=(dz, dx),
        thickness=dy,
        instance_number=2,
        image_type=image_type,
    )
    return [sagittal, coronal]


@dataclass(frozen=True)
class _SeriesContext:
    modality: Modality
    identity: StudyIdentity
    series_uid: str
    series_number: int
    description: str
    frame_of_reference_uid: str
    patient_position: str
    encoding: _Encoding
    slice_spacing: float
    jpeg_ls: bool


def _dataset(item: _Slice, sop_uid: str, ctx: _SeriesContext) -> Dataset:
    """One complete instance: the modules of PS3.3 A.3 (CT) or A.4 (MR), in memory."""
    sop_class = SOP_CLASS_BY_MODALITY[ctx.modality]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    # SOP Common (C.12.1)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = ctx.identity.study_date
    ds.InstanceCreationTime = ctx.identity.study_time
    add_patient_and_study(ds, ctx.identity)
    add_series(
        ds,
        modality=ctx.modality,
        series_uid=ctx.series_uid,
        series_number=ctx.series_number,
        description=ctx.description,
        patient_position=ctx.patient_position,
        identity=ctx.identity,
    )
    add_frame_of_reference_and_equipment(ds, ctx.frame_of_reference_uid)
    add_general_image(
        ds,
        instance_number=item.instance_number,
        image_type=item.image_type,
        identity=ctx.identity,
    )
    add_image_plane(
        ds,
        position=item.position.tolist(),
        orientation=item.orientation.tolist(),
        pixel_spacing=item.pixel_spacing,
        slice_thickness=item.thickness,
    )
    rows, columns = item.pixels.shape
    add_image_pixel(ds, rows=rows, columns=columns, signed=ctx.encoding.signed)
    add_modality_specific(
        ds,
        ctx.modality,
        slope=ctx.encoding.slope,
        intercept=ctx.encoding.intercept,
        slice_spacing=ctx.slice_spacing,
    )
    add_voi_lut(ds, ctx.modality)
    ds.PixelData = ctx.encoding.to_stored(item.pixels).tobytes()
    if ctx.jpeg_ls:
        # pydicom would otherwise mint a random SOP Instance UID and break reproducibility.
        ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls", generate_instance_uid=False)
    return ds


def write_series(
    case: SyntheticCase,
    out_dir: Path,
    quirks: DicomQuirks = _NO_QUIRKS,
    identity: StudyIdentity | None = None,
    *,
    series_number: int = 1,
) -> WrittenSeries:
    """Write ``case`` as one DICOM file per slice into ``out_dir`` (created if missing).

    ``identity`` defaults to :meth:`StudyIdentity.synthetic` of the case seed; pass one
    identity and distinct ``series_number`` values to write several series of one study
    into the same folder. Existing files are never overwritten (``FileExistsError``).
    """
    modality = _validate(case)
    if series_number < 1 or series_number >= LOCALIZER_SERIES_OFFSET:
        raise ValueError(
            f"series_number must be in 1..{LOCALIZER_SERIES_OFFSET - 1}, got {series_number}"
        )
    identity = identity or StudyIdentity.synthetic(case.seed, modality)
    study_uid = identity.study_instance_uid
    for_uid = derived_uid("frame-of-reference", study_uid, case.seed, modality.value)
    axial_ctx = _SeriesContext(
        modality=modality,
        identity=identity,
        series_uid=derived_uid(
            "series", study_uid, case.seed, modality.value, series_number, quirks.model_dump_json()
        ),
        series_number=series_number,
        description=f"SYNTHETIC {modality.value} ANGIO",
        frame_of_reference_uid=for_uid,
        patient_position="FFS" if quirks.feet_first else "HFS",
        encoding=_encoding(modality, quirks.rescale),
        slice_spacing=case.geometry.spacing[0],
        jpeg_ls=quirks.jpeg_ls,
    )
    all_series = [(axial_ctx, _axial_slices(case, modality, quirks.feet_first))]
    if quirks.localizer:
        localizer_ctx = replace(
            axial_ctx,
            series_uid=derived_uid("localizer", axial_ctx.series_uid),
            series_number=series_number + LOCALIZER_SERIES_OFFSET,
            description=f"SYNTHETIC {modality.value} LOCALIZER",
        )
        all_series.append((localizer_ctx, _localizer_slices(case)))

    # Seeded by the series UID, which already folds in study, seed, modality, series
    # number and quirks: two series never draw the same file names.
    rng = np.random.default_rng(list(axial_ctx.series_uid.encode()))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[list[tuple[Path, str]]] = []
    jobs: list[tuple[Path, str, _Slice, _SeriesContext]] = []
    for ctx, slices in all_series:
        written.append([])
        for item in slices:
            uid = str(derived_uid("sop", ctx.series_uid, item.instance_number))
            if quirks.shuffle:
                name = str(uuid.UUID(bytes=rng.bytes(16), version=4))
            else:
                name = f"{modality.value}_{ctx.series_number:04d}_{item.instance_number:04d}.dcm"
            path = out_dir / name
            if path.exists():
                raise FileExistsError(f"{path} exists; use another folder or series_number")
            written[-1].append((path, uid))
            jobs.append((path, uid, item, ctx))
    order = rng.permutation(len(jobs)) if quirks.shuffle else range(len(jobs))
    for index in order:
        path, uid, item, ctx = jobs[int(index)]
        _dataset(item, uid, ctx).save_as(path, enforce_file_format=True)

    localizer = written[1] if quirks.localizer else []
    return WrittenSeries(
        study_instance_uid=study_uid,
        series_instance_uid=axial_ctx.series_uid,
        frame_of_reference_uid=for_uid,
        series_number=series_number,
        modality=modality,
        quirks=quirks,
        transfer_syntax_uid=str(JPEGLSLossless if quirks.jpeg_ls else ExplicitVRLittleEndian),
        files=tuple(path for path, _ in written[0]),
        sop_instance_uids=tuple(uid for _, uid in written[0]),
        localizer_series_instance_uid=all_series[1][0].series_uid if quirks.localizer else None,
        localizer_files=tuple(path for path, _ in localizer),
        localizer_sop_instance_uids=tuple(uid for _, uid in localizer),
    )
