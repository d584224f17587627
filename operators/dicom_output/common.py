"""What every DICOM writer shares: equipment identity, output settings, UIDs, checks.

The writers turn one :class:`~operators.values.SeriesVolume` and its
:class:`~operators.values.SegmentationResult` into derived objects that belong to
the source study (PS3.3 C.7.2.1: same Study Instance UID) and its frame of reference
(C.7.4.1), each in a new series (C.7.3.1) whose number differs from the source's.

UIDs are a pure function of (source series UID, object kind, model version): re-running
the same model on the same series yields the same Series and SOP Instance UIDs, so a
re-export replaces the earlier objects at the PACS instead of duplicating them, while a
new model version produces new objects beside the old ones.
"""

from __future__ import annotations

import enum
import uuid
from typing import Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from operators.errors import DicomOutputError
from operators.values import SegmentationResult, SeriesVolume, check_same_grid

__all__ = [
    "PRIVATE_CODING_SCHEME",
    "DicomOutputError",
    "Equipment",
    "OutputKind",
    "OutputSettings",
    "SeriesSettings",
    "add_private_coding_scheme",
    "check_inputs",
    "copy_body_part",
    "derived_uid",
    "describe_series",
    "enhanced_equipment",
    "flagged_description",
    "identity",
    "source_series_number",
]

# Designators starting "99" are reserved for private coding schemes (PS3.3 8.2); used
# only for concepts the standard has no code for (model uncertainty quantities, the
# review flag). Declared in the Coding Scheme Identification Sequence (C.12.1.1.4).
PRIVATE_CODING_SCHEME = "99MINIVESS"
_UID_NAMESPACE = "minivess-dicom-output"
LO_MAX = 64  # VR LO: labels, descriptions, algorithm names (PS3.5 6.2)


class OutputKind(enum.StrEnum):
    """Each derived object the appliance writes; part of its UIDs and its series."""

    SEGMENTATION = "seg"
    PROBABILITY = "seg-probability"
    MUTUAL_INFORMATION = "pm-mutual-information"
    PREDICTIVE_ENTROPY = "pm-predictive-entropy"
    EXPECTED_ENTROPY = "pm-expected-entropy"
    REPORT = "sr"


class Equipment(BaseModel):
    """The device that creates the objects (General / Enhanced General Equipment, C.7.5)."""

    model_config = ConfigDict(frozen=True)

    manufacturer: str = Field(default="MinIVess", min_length=1, max_length=LO_MAX)
    model_name: str = Field(default="MinIVess Vessel Appliance", min_length=1, max_length=LO_MAX)
    software_versions: tuple[str, ...] = Field(default=("0.1.0",), min_length=1)
    device_serial_number: str = Field(default="MINIVESS-0001", min_length=1, max_length=LO_MAX)
    institution_name: str | None = Field(default=None, max_length=LO_MAX)

    @property
    def software_versions_value(self) -> str:
        """Software Versions (LO, 1-n) as one backslash-joined value, as pydicom stores it."""
        return "\\".join(self.software_versions)


class SeriesSettings(BaseModel):
    """Series Number and Description of one output series (General Series, C.7.3.1)."""

    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=1, le=2**31 - 1)
    description: str = Field(max_length=LO_MAX)


_DEFAULT_SERIES = {
    OutputKind.SEGMENTATION: SeriesSettings(number=901, description="MinIVess vessel SEG"),
    OutputKind.PROBABILITY: SeriesSettings(number=902, description="MinIVess vessel prob"),
    OutputKind.MUTUAL_INFORMATION: SeriesSettings(number=903, description="MinIVess MI map"),
    OutputKind.PREDICTIVE_ENTROPY: SeriesSettings(number=904, description="MinIVess entropy"),
    OutputKind.EXPECTED_ENTROPY: SeriesSettings(number=905, description="MinIVess exp entropy"),
    OutputKind.REPORT: SeriesSettings(number=906, description="MinIVess vessel report"),
}

# Series numbers move by this much when they would equal the source series' number.
SERIES_NUMBER_BUMP = 1000


class OutputSettings(BaseModel):
    """How the writers label, number and encode what they produce."""

    model_config = ConfigDict(frozen=True)

    equipment: Equipment = Field(default_factory=Equipment)
    series: dict[OutputKind, SeriesSettings] = Field(default_factory=lambda: dict(_DEFAULT_SERIES))
    uid_root: str | None = Field(
        default=None,
        max_length=54,  # pydicom leaves at least 10 digits for the hash
        pattern=r"^[0-9]+(\.[0-9]+)*\.$",
        description="Site UID root ending in '.'; None gives 2.25 (UUID-derived) UIDs.",
    )
    # Explicit VR Little Endian: the only syntax every peer decodes for BINARY SEG
    # (highdicom compresses BINARY only as JPEG 2000, which dcmtk 3.6.7 cannot read).
    transfer_syntax_uid: str = str(ExplicitVRLittleEndian)
    ood_marker: str = Field(default="REVIEW: out-of-distribution", max_length=40)
    # Content Qualification (C.8.32.1) of the Parametric Maps: an uncertainty estimate
    # is no cleared quantitative measurement, so RESEARCH unless a site decides otherwise.
    content_qualification: Literal["PRODUCT", "RESEARCH", "SERVICE"] = "RESEARCH"

    def series_for(self, kind: OutputKind, volume: SeriesVolume) -> SeriesSettings:
        """Number and description of ``kind``'s series, never clashing with the source's."""
        chosen = self.series.get(kind, _DEFAULT_SERIES[kind])
        if chosen.number == source_series_number(volume):
            chosen = chosen.model_copy(update={"number": chosen.number + SERIES_NUMBER_BUMP})
        return chosen

    def uid(self, volume: SeriesVolume, kind: OutputKind, model_version: str, role: str) -> UID:
        """Deterministic UID for ``role`` ("series", "sop", ...) of one output object."""
        return derived_uid(
            self.uid_root, volume.series_instance_uid, kind.value, model_version, role
        )


def derived_uid(root: str | None, *parts: str) -> UID:
    """A UID that is a pure function of ``parts`` (and the root it is minted under).

    Without a site root: a name-based (SHA-1) UUID under 2.25 (PS3.5 B.2, ISO/IEC
    9834-8); pydicom's ``generate_uid(prefix=None)`` ignores its entropy sources and
    would mint a random UUID.
    """
    # A separator no UID or version contains, so ("ab", "c") and ("a", "bc") differ.
    name = "\x1f".join([_UID_NAMESPACE, *parts])
    if root is None:
        return UID(f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}")
    return generate_uid(prefix=root, entropy_srcs=[name])


class Identity(TypedDict):
    series_instance_uid: UID
    series_number: int
    sop_instance_uid: UID
    instance_number: int
    manufacturer: str


class EnhancedEquipment(TypedDict):
    manufacturer_model_name: str
    software_versions: str
    device_serial_number: str


def identity(
    settings: OutputSettings, kind: OutputKind, volume: SeriesVolume, result: SegmentationResult
) -> Identity:
    """Series, instance and maker of one derived object, as highdicom's keyword arguments.

    Every writer's constructor takes them (General Series C.7.3.1, SOP Common C.12.1,
    General Equipment C.7.5.1); the UIDs are deterministic (see the module docstring).
    """
    return {
        "series_instance_uid": settings.uid(volume, kind, result.model_version, "series"),
        "series_number": settings.series_for(kind, volume).number,
        "sop_instance_uid": settings.uid(volume, kind, result.model_version, "sop"),
        "instance_number": 1,
        "manufacturer": settings.equipment.manufacturer,
    }


def enhanced_equipment(equipment: Equipment) -> EnhancedEquipment:
    """Enhanced General Equipment (C.7.5.2), as highdicom's SEG and PM keyword arguments."""
    return {
        "manufacturer_model_name": equipment.model_name,
        "software_versions": equipment.software_versions_value,
        "device_serial_number": equipment.device_serial_number,
    }


def describe_series(
    dataset: Dataset,
    settings: OutputSettings,
    kind: OutputKind,
    volume: SeriesVolume,
    result: SegmentationResult,
) -> None:
    """Series Description (with the review flag) and the site's Institution Name, if set."""
    description = settings.series_for(kind, volume).description
    dataset.SeriesDescription = flagged_description(description, result, settings.ood_marker)
    if settings.equipment.institution_name:
        dataset.InstitutionName = settings.equipment.institution_name


def source_series_number(volume: SeriesVolume) -> int | None:
    value = volume.source_datasets[0].get("SeriesNumber") if volume.source_datasets else None
    return None if value in (None, "") else int(value)


def flagged_description(text: str, result: SegmentationResult, marker: str) -> str:
    """Prefix ``marker`` for out-of-distribution studies, clipped to VR LO."""
    full = f"{marker} {text}" if result.out_of_distribution else text
    return full[:LO_MAX]


def copy_body_part(volume: SeriesVolume, dataset: Dataset) -> None:
    """Body Part Examined from the source; else an empty Laterality (type 2C, C.7.3.1).

    Laterality is required unless the body part is known to be unpaired; a derived image
    of the same anatomy states the same body part the source did.
    """
    body_part = volume.source_datasets[0].get("BodyPartExamined")
    if body_part:
        dataset.BodyPartExamined = body_part
    elif "Laterality" not in dataset:
        dataset.Laterality = ""


def add_private_coding_scheme(dataset: Dataset) -> None:
    """Declare the private scheme our codes use (Coding Scheme Identification, C.12.1)."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_CODING_SCHEME
    item.CodingSchemeName = "MinIVess local codes"
    item.CodingSchemeResponsibleOrganization = "MinIVess"
    dataset.CodingSchemeIdentificationSequence = [item]


def check_inputs(volume: SeriesVolume, result: SegmentationResult) -> None:
    """Fail with a specific message unless a DICOM object can be derived from ``volume``.

    The values check themselves when made (:mod:`operators.values`); a derived object
    also needs the source instances (a NIfTI volume has none) and the result on their grid.
    """
    if not volume.source_datasets:
        raise DicomOutputError("the volume has no source datasets to derive objects from")
    check_same_grid(volume, result)
