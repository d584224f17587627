"""Scan a folder of DICOM files into studies and series, reading headers only.

A folder pushed by a PACS or copied from a CD holds files of any name, in any order,
possibly from several studies and series, mixed with files that are not DICOM at all.
:func:`scan_dicom_folder` reads the header of every file (never its pixel data), groups
the instances by Study Instance UID (0020,000D) and Series Instance UID (0020,000E), and
lists each file it cannot use as a :class:`~operators.run_report.SkippedInput` with the
reason: one bad file never stops the run.

A file is used when it is a DICOM Part 10 file (PS3.10 7.1: preamble, ``DICM`` prefix,
File Meta Information) whose data set carries the Type 1 UIDs SOP Class (0008,0016), SOP
Instance (0008,0018), Study Instance and Series Instance (PS3.3 C.12.1, C.7.2.1, C.7.3.1).
Objects that are not images (SR, SEG, presentation states, key object selections, RT
objects, encapsulated documents, waveforms, or anything without the Image Pixel Module of
PS3.3 C.7.6.3) are kept as series marked ``is_image=False``, so that the report can say
what was received.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import DeflatedExplicitVRLittleEndian

from operators.dicom_input.headers import (
    floats,
    int_value,
    non_image_reason,
    pixel_data_follows,
    plain_value,
)
from operators.errors import InputNotFoundError
from operators.run_report import SkippedInput

_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


@dataclass(frozen=True)
class DicomInstance:
    """The header facts of one file that selection and volume building need.

    Geometry attributes (PS3.3 C.7.6.2, Image Plane Module) are ``None`` when absent or
    malformed, so that the volume builder can name the file in its error.
    """

    path: Path
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    instance_number: int | None
    rows: int | None
    columns: int | None
    number_of_frames: int
    image_type: tuple[str, ...]
    image_position: tuple[float, ...] | None
    image_orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, ...] | None
    frame_of_reference_uid: str
    has_pixel_data: bool
    is_image: bool


@dataclass(frozen=True)
class DicomSeries:
    """One series: its instances (file paths and header facts, no pixels) and attributes.

    ``header`` is the header of the first instance (by Instance Number), used to look up
    any other attribute a selection rule names: series and study attributes are the same
    in every instance of a series (PS3.3 C.7.3.1, C.7.2.1).
    """

    study_instance_uid: str
    series_instance_uid: str
    modality: str
    series_number: int | None
    series_description: str
    sop_class_uid: str
    instances: tuple[DicomInstance, ...]
    is_image: bool
    non_image_reason: str | None
    header: Dataset = field(repr=False, compare=False)

    @property
    def image_instances(self) -> tuple[DicomInstance, ...]:
        return tuple(inst for inst in self.instances if inst.is_image)

    @property
    def image_types(self) -> tuple[tuple[str, ...], ...]:
        """Distinct Image Type (0008,0008) values among the instances, in first-seen order."""
        return tuple(dict.fromkeys(inst.image_type for inst in self.instances))

    @property
    def orientations(self) -> tuple[tuple[float, ...], ...]:
        """Distinct Image Orientation (Patient) values among the image instances."""
        return tuple(
            dict.fromkeys(
                inst.image_orientation
                for inst in self.image_instances
                if inst.image_orientation is not None
            )
        )

    def attribute(self, keyword: str) -> Any:
        """The value of a DICOM attribute as plain Python (str, int, float, list), or None."""
        if keyword == "NumberOfSeriesRelatedInstances":
            return len(self.instances)
        return plain_value(self.header, keyword)


@dataclass(frozen=True)
class DicomStudy:
    study_instance_uid: str
    study_description: str
    series: tuple[DicomSeries, ...]


@dataclass(frozen=True)
class DicomScan:
    """What a folder holds: studies in a deterministic order, and the files not used."""

    root: Path
    studies: tuple[DicomStudy, ...]
    skipped: tuple[SkippedInput, ...]
    files_scanned: int

    @property
    def all_series(self) -> tuple[DicomSeries, ...]:
        return tuple(series for study in self.studies for series in study.series)

    @property
    def image_series(self) -> tuple[DicomSeries, ...]:
        return tuple(series for series in self.all_series if series.is_image)


def _iter_files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    # Sorted walk without following links: deterministic, and no loops through symlinks.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file():
                yield path


def _read_instance(path: Path) -> tuple[DicomInstance, Dataset] | SkippedInput:
    try:
        with path.open("rb") as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=False)
            syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
            # A deflated data set is read from an inflated copy: the file position says
            # nothing then, so trust the Image Pixel Module instead.
            if syntax == DeflatedExplicitVRLittleEndian:
                has_pixels = "Rows" in ds
            else:
                has_pixels = pixel_data_follows(fp, ds)
        for keyword in _REQUIRED_UIDS:
            if not str(ds.get(keyword, "") or "").strip():
                reason = f"DICOM header without {keyword} (truncated, corrupt or a DICOMDIR)"
                return SkippedInput(path=str(path), reason=reason)
        sop_class = str(ds.SOPClassUID)
        rows, columns = int_value(ds, "Rows"), int_value(ds, "Columns")
        image_type = ds.get("ImageType") or ()
        if isinstance(image_type, str):
            image_type = [image_type]
        instance = DicomInstance(
            path=path,
            study_instance_uid=str(ds.StudyInstanceUID).strip(),
            series_instance_uid=str(ds.SeriesInstanceUID).strip(),
            sop_instance_uid=str(ds.SOPInstanceUID).strip(),
            sop_class_uid=sop_class,
            transfer_syntax_uid=syntax,
            instance_number=int_value(ds, "InstanceNumber"),
            rows=rows,
            columns=columns,
            number_of_frames=int_value(ds, "NumberOfFrames") or 1,
            image_type=tuple(str(v).strip().upper() for v in image_type),
            image_position=floats(ds, "ImagePositionPatient", 3),
            image_orientation=floats(ds, "ImageOrientationPatient", 6),
            pixel_spacing=floats(ds, "PixelSpacing", 2),
            frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
            has_pixel_data=has_pixels,
            is_image=non_image_reason(sop_class) is None and bool(rows) and bool(columns),
        )
    except InvalidDicomError:
        return SkippedInput(
            path=str(path), reason="not a DICOM file (no DICM prefix after the preamble)"
        )
    except OSError as exc:
        return SkippedInput(
            path=str(path), reason=f"unreadable: {exc.strerror or type(exc).__name__}"
        )
    except Exception as exc:  # pydicom raises many types on corrupt headers
        return SkippedInput(
            path=str(path), reason=f"corrupt DICOM header: {type(exc).__name__}: {exc}"
        )
    return instance, ds


def _order(inst: DicomInstance) -> tuple[bool, bool, int, str]:
    """Image instances first, then by Instance Number (absent last) and path."""
    number = inst.instance_number
    return (not inst.is_image, number is None, number or 0, str(inst.path))


def _build_series(instances: list[DicomInstance], header: Dataset) -> DicomSeries:
    instances.sort(key=_order)
    first = instances[0]
    is_image = first.is_image
    reason = None
    if not is_image:
        reason = non_image_reason(first.sop_class_uid) or "no Image Pixel Module (Rows, Columns)"
    return DicomSeries(
        study_instance_uid=first.study_instance_uid,
        series_instance_uid=first.series_instance_uid,
        modality=str(plain_value(header, "Modality") or "").upper(),
        series_number=int_value(header, "SeriesNumber"),
        series_description=str(plain_value(header, "SeriesDescription") or ""),
        sop_class_uid=first.sop_class_uid,
        instances=tuple(instances),
        is_image=is_image,
        non_image_reason=reason,
        header=header,
    )


def scan_dicom_folder(path: Path | str) -> DicomScan:
    """Read the header of every file under ``path`` (or of the single file ``path``).

    Studies are ordered by Study Instance UID, series by Series Number then Series
    Instance UID. A second file with an already seen SOP Instance UID is skipped (a copy),
    keeping the one that has pixel data. Raises :class:`InputNotFoundError` when ``path``
    does not exist or cannot be listed.
    """
    root = Path(path)
    if not root.exists():
        raise InputNotFoundError(f"input path {root} does not exist")
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise InputNotFoundError(f"input folder {root} cannot be read")

    skipped: list[SkippedInput] = []
    by_uid: dict[str, DicomInstance] = {}
    # One header per series, not per file: a study of thousands of images stays small.
    headers: dict[tuple[str, str], tuple[tuple[bool, bool, int, str], Dataset]] = {}
    scanned = 0
    for file_path in _iter_files(root):
        scanned += 1
        result = _read_instance(file_path)
        if isinstance(result, SkippedInput):
            skipped.append(result)
            continue
        inst, ds = result
        seen = by_uid.get(inst.sop_instance_uid)
        if seen is not None:
            keep, drop = (inst, seen) if inst.has_pixel_data > seen.has_pixel_data else (seen, inst)
            reason = f"duplicate of SOP Instance UID {inst.sop_instance_uid} (also in {keep.path})"
            skipped.append(SkippedInput(path=str(drop.path), reason=reason))
            if keep is seen:
                continue
        by_uid[inst.sop_instance_uid] = inst
        key = (inst.study_instance_uid, inst.series_instance_uid)
        current = headers.get(key)
        if current is None or _order(inst) < current[0]:
            headers[key] = (_order(inst), ds)

    grouped: dict[tuple[str, str], list[DicomInstance]] = defaultdict(list)
    for inst in by_uid.values():
        grouped[(inst.study_instance_uid, inst.series_instance_uid)].append(inst)
    studies: dict[str, list[DicomSeries]] = defaultdict(list)
    for key, instances in grouped.items():
        studies[key[0]].append(_build_series(instances, headers[key][1]))
    ordered = []
    for study_uid in sorted(studies):
        series = sorted(
            studies[study_uid],
            key=lambda s: (s.series_number is None, s.series_number or 0, s.series_instance_uid),
        )
        description = str(plain_value(series[0].header, "StudyDescription") or "")
        ordered.append(DicomStudy(study_uid, description, tuple(series)))
    return DicomScan(
        root=root,
        studies=tuple(ordered),
        skipped=tuple(sorted(skipped, key=lambda s: s.path)),
        files_scanned=scanned,
    )
