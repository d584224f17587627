"""DICOM attribute builders for synthetic CT and MR image series, one function per module.

Each builder fills the attributes of one module of the CT Image IOD (PS3.3 A.3) or the MR
Image IOD (PS3.3 A.4) on a :class:`pydicom.Dataset`. Type 1 attributes always get a value,
type 2 attributes are present (possibly empty), and only those type 3 attributes a
clinical reader commonly relies on are added. Nothing here reads a clock or a random
source: every value is derived from the inputs, so files are byte-reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid
from pydicom.valuerep import format_number_as_ds

from synthetic.case import Modality

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
SOP_CLASS_BY_MODALITY = {Modality.CT: CT_IMAGE_STORAGE, Modality.MR: MR_IMAGE_STORAGE}

# Namespace of every entropy list, so our UIDs cannot coincide with another tool's that
# also hashes small integers under pydicom's root.
_UID_NAMESPACE = "minivess-synthetic-dicom"


def derived_uid(*parts: object) -> UID:
    """A UID that is a pure function of ``parts`` (hashed under pydicom's UID root)."""
    return generate_uid(entropy_srcs=[_UID_NAMESPACE, *(str(part) for part in parts)])


def ds_values(values: Sequence[float]) -> list[str]:
    """Format numbers as DS strings (max 16 chars), turning -0.0 into 0.0.

    Formatting ourselves instead of letting pydicom ``str()`` a float keeps the values
    valid for VR DS whatever their magnitude, and stable across numpy versions.
    """
    return [format_number_as_ds(float(value) + 0.0) for value in values]


class StudyIdentity(BaseModel):
    """Patient and study level identity shared by every series of one study.

    Covers the Patient (PS3.3 C.7.1.1) and General Study (PS3.3 C.7.2.1) modules. Pass
    the same instance to several ``write_series`` calls to put their series in one study.
    """

    model_config = ConfigDict(frozen=True)

    patient_name: str = Field(max_length=64)
    patient_id: str = Field(max_length=64)
    patient_birth_date: str = Field(pattern=r"^\d{8}$")
    patient_sex: str = Field(pattern=r"^(M|F|O)$")
    study_instance_uid: str = Field(max_length=64, pattern=r"^[0-9.]+$")
    study_id: str = Field(max_length=16)
    accession_number: str = Field(max_length=16)
    study_date: str = Field(pattern=r"^\d{8}$")
    study_time: str = Field(pattern=r"^\d{6}$")
    study_description: str = Field(default="SYNTHETIC ANGIOGRAPHY", max_length=64)
    referring_physician_name: str = Field(default="", max_length=64)

    @classmethod
    def synthetic(
        cls, seed: int, modality: Modality | str, study_key: str = "study"
    ) -> StudyIdentity:
        """Obviously synthetic identity derived from ``seed`` (and ``study_key``)."""
        modality = Modality(modality)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        tag = f"{seed:04d}"
        return cls(
            patient_name=f"SYNTHETIC^{modality.value}^{tag}",
            patient_id=f"SYN-{modality.value}-{tag}",
            patient_birth_date=f"{1940 + seed % 60:04d}0101",
            patient_sex="O",
            study_instance_uid=derived_uid("study", seed, study_key),
            study_id=f"{seed % 10**8}",
            accession_number=f"SYN{seed % 10**12:012d}",
            study_date="20240115",
            study_time=f"{8 + seed % 10:02d}{seed % 60:02d}00",
        )


def add_patient_and_study(ds: Dataset, identity: StudyIdentity) -> None:
    """Patient (C.7.1.1) and General Study (C.7.2.1) modules."""
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.patient_birth_date
    ds.PatientSex = identity.patient_sex
    ds.StudyInstanceUID = identity.study_instance_uid
    ds.StudyDate = identity.study_date
    ds.StudyTime = identity.study_time
    ds.ReferringPhysicianName = identity.referring_physician_name
    ds.StudyID = identity.study_id
    ds.AccessionNumber = identity.accession_number
    ds.StudyDescription = identity.study_description


def add_series(
    ds: Dataset,
    *,
    modality: Modality,
    series_uid: str,
    series_number: int,
    description: str,
    patient_position: str,
    identity: StudyIdentity,
) -> None:
    """General Series (C.7.3.1): PatientPosition is type 2C, required for CT and MR."""
    ds.Modality = modality.value
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.SeriesDate = identity.study_date
    ds.SeriesTime = identity.study_time
    ds.PatientPosition = patient_position
    # Laterality is type 2C unless the body part is unpaired: naming the body part
    # satisfies the condition without claiming a side.
    ds.BodyPartExamined = "HEAD"


def add_frame_of_reference_and_equipment(ds: Dataset, frame_of_reference_uid: str) -> None:
    """Frame of Reference (C.7.4.1) and General Equipment (C.7.5.1) modules."""
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "MinIVess synthetic"
    ds.ManufacturerModelName = "synthetic.dicom_series"
    ds.SoftwareVersions = "1"


def add_general_image(
    ds: Dataset, *, instance_number: int, image_type: Sequence[str], identity: StudyIdentity
) -> None:
    """General Image (C.7.6.1); ImageType is refined by the CT/MR image modules."""
    ds.ImageType = list(image_type)
    ds.InstanceNumber = instance_number
    ds.AcquisitionNumber = 1
    ds.AcquisitionDate = identity.study_date
    ds.AcquisitionTime = identity.study_time
    ds.ContentDate = identity.study_date
    ds.ContentTime = identity.study_time


def add_image_plane(
    ds: Dataset,
    *,
    position: Sequence[float],
    orientation: Sequence[float],
    pixel_spacing: tuple[float, float],
    slice_thickness: float,
) -> None:
    """Image Plane (C.7.6.2); PixelSpacing is (row spacing, column spacing), C.7.6.2.1.1."""
    ds.ImagePositionPatient = ds_values(position)
    ds.ImageOrientationPatient = ds_values(orientation)
    ds.PixelSpacing = ds_values(pixel_spacing)
    ds.SliceThickness = ds_values([slice_thickness])[0]


def add_image_pixel(ds: Dataset, *, rows: int, columns: int, signed: bool) -> None:
    """Image Pixel (C.7.6.3) description of 16-bit greyscale; PixelData is set by the caller."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0


def add_modality_specific(
    ds: Dataset,
    modality: Modality,
    *,
    slope: float,
    intercept: float,
    slice_spacing: float,
) -> None:
    """CT Image (C.8.2.1) or MR Image (C.8.3.1) module, plus the rescale pair.

    The MR Image IOD has no Modality LUT module; a non-identity rescale is still written
    for MR because scanners in the field do so, and readers must honour it.
    """
    if modality is Modality.CT:
        ds.KVP = "120"
        ds.ConvolutionKernel = "STANDARD"
        ds.ContrastBolusAgent = "IODINATED CONTRAST"
        ds.ContrastBolusRoute = "IV"
        ds.RescaleIntercept = ds_values([intercept])[0]
        # RescaleType is left out: CT Image makes it conditional on multi-energy, and
        # dciodvfy rejects "HU" on localizers.
        ds.RescaleSlope = ds_values([slope])[0]
        return
    # A 3D time-of-flight angiography: spoiled gradient echo without contrast agent.
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = ["SP", "OSP"]
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "3D"
    ds.SequenceName = "TOF3D"
    ds.AngioFlag = "Y"
    ds.RepetitionTime = "22"
    ds.EchoTime = "3.5"
    ds.EchoTrainLength = 1
    ds.FlipAngle = "18"
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = "3"
    ds.ImagingFrequency = "127.8"
    ds.SpacingBetweenSlices = ds_values([slice_spacing])[0]
    if slope != 1.0 or intercept != 0.0:
        ds.RescaleIntercept = ds_values([intercept])[0]
        ds.RescaleSlope = ds_values([slope])[0]
        ds.RescaleType = "US"


def add_voi_lut(ds: Dataset, modality: Modality) -> None:
    """VOI LUT (C.11.2): a window in output (rescaled) units; centre and width go together."""
    if modality is Modality.CT:
        ds.WindowCenter, ds.WindowWidth = "300", "800"
        ds.WindowCenterWidthExplanation = "ANGIO"
    else:
        ds.WindowCenter, ds.WindowWidth = "600", "1200"
        ds.WindowCenterWidthExplanation = "TOF"
