"""Header facts read defensively: SOP class kinds and attribute values as plain Python.

Input folders hold whatever scanners and exporters wrote. Every reader here turns a
missing or malformed value into ``None`` instead of raising, so that the scan can list the
file and the volume builder can name it in a specific error.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

# Pixel Data, Float Pixel Data, Double Float Pixel Data (PS3.3 C.7.6.3, C.7.6.24)
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})

# SOP classes that are never images to segment, even when some carry pixel data
# (Segmentation, RT Dose, Parametric Map): PS3.4 B.5 standard SOP classes.
_NON_IMAGE_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, key object selection
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF, CDA, STL, OBJ, MTL
)
_NON_IMAGE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map
        "1.2.840.10008.5.1.4.1.1.66",  # Raw Data
        "1.2.840.10008.5.1.4.1.1.66.1",  # Spatial Registration
        "1.2.840.10008.5.1.4.1.1.66.2",  # Spatial Fiducials
        "1.2.840.10008.5.1.4.1.1.66.3",  # Deformable Spatial Registration
        "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
        "1.2.840.10008.5.1.4.1.1.66.5",  # Surface Segmentation
        "1.2.840.10008.5.1.4.1.1.66.6",  # Tractography Results
        "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation
        "1.2.840.10008.5.1.4.1.1.67",  # Real World Value Mapping
        "1.2.840.10008.5.1.4.1.1.481.2",  # RT Dose
        "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
        "1.2.840.10008.5.1.4.1.1.481.4",  # RT Beams Treatment Record
        "1.2.840.10008.5.1.4.1.1.481.5",  # RT Plan
        "1.2.840.10008.5.1.4.1.1.481.6",  # RT Brachy Treatment Record
        "1.2.840.10008.5.1.4.1.1.481.7",  # RT Treatment Summary Record
        "1.2.840.10008.5.1.4.1.1.481.8",  # RT Ion Plan
        "1.2.840.10008.5.1.4.1.1.481.9",  # RT Ion Beams Treatment Record
    }
)


def non_image_reason(sop_class_uid: str) -> str | None:
    """Why instances of this SOP class are not images to segment, or ``None``."""
    if sop_class_uid in _NON_IMAGE_CLASSES or sop_class_uid.startswith(_NON_IMAGE_PREFIXES):
        return f"{UID(sop_class_uid).name or sop_class_uid} is not an image SOP class"
    return None


def plain_value(ds: Dataset, keyword: str) -> Any:
    """``ds.<keyword>`` as str, int, float or a list of them; ``None`` if absent or empty."""
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed value: treat as absent rather than fail the scan
        return None
    if value is None or value == "":
        return None
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return [scalar(v) for v in value] if len(value) else None
    if isinstance(value, pydicom.sequence.Sequence | bytes):
        return None  # sequences and binary values are not matched by selection rules
    return scalar(value)


def scalar(value: Any) -> Any:
    """One DICOM value as plain Python."""
    # DSfloat, IS and DSdecimal become plain numbers; PersonName, UID and the like text.
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float | Decimal):
        return float(value)
    return str(value)


def floats(ds: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    """Exactly ``count`` numbers (a DS of that multiplicity), else ``None``."""
    try:
        values = ds.get(keyword)
        if values is None:
            return None
        parsed = tuple(float(v) for v in (values if count > 1 else [values]))
    except Exception:  # wrong type, unknown VR, odd byte count: malformed means absent
        return None
    return parsed if len(parsed) == count else None


def int_value(ds: Dataset, keyword: str) -> int | None:
    """An IS/US value as int, else ``None``."""
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else int(value)
    except Exception:  # wrong type, unknown VR, odd byte count: malformed means absent
        return None


def pixel_data_follows(fp: Any, ds: Dataset) -> bool:
    """Whether the stream, stopped before pixel data by pydicom, is at a pixel data tag."""
    header = fp.read(4)
    if len(header) < 4:
        return False
    big = ds.original_encoding[1] is False
    group, element = (
        (int.from_bytes(header[:2], "big"), int.from_bytes(header[2:], "big"))
        if big
        else (int.from_bytes(header[:2], "little"), int.from_bytes(header[2:], "little"))
    )
    tag = (group << 16) | element
    return tag in PIXEL_TAGS
