"""The gateway's directly encoded Part 10 file header (:func:`service.part10.file_header`)
against pydicom's reading, pynetdicom's own encoding and its refusals of what it cannot
encode. (The header of a spooled instance as dcmtk's ``dcmdump`` reads it:
tests/test_dicom_reactor.py, test_instance_in_many_small_pdus_is_spooled_intact.)
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID
from pynetdicom.dsutils import create_file_meta, encode_file_meta, split_dataset

from service.part10 import file_header
from tests.reactor_support import study_fixture  # noqa: F401  (the study fixture)
from tests.service_support import CT_IMAGE, make_study


@pytest.fixture(scope="module")
def encoded(study: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One Part 10 file per transfer syntax: Explicit VR LE, Implicit VR LE, JPEG-LS."""
    folder = tmp_path_factory.mktemp("syntaxes")
    implicit = pydicom.dcmread(study.files[0])
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    implicit.save_as(folder / "implicit.dcm", implicit_vr=True, little_endian=True,
                     enforce_file_format=True)  # fmt: skip
    jpeg_ls = make_study(folder / "jpeg_ls", seed=52, jpeg_ls=True)
    return {
        str(ExplicitVRLittleEndian): study.files[0],
        str(ImplicitVRLittleEndian): folder / "implicit.dcm",
        str(JPEGLSLossless): jpeg_ls.files[0],
    }


# (SOP Instance UID, Implementation Class UID, version name, AE title): odd and even
# lengths of each, empty optional values, the longest AE title.
IDENTITIES = [
    ("1.2.3.4", PYNETDICOM_IMPLEMENTATION_UID, "PYNETDICOM_304", "MINIVESS_TEST"),
    ("1.2.3.45", "1.2.34", "X", "AE"),
    ("1.2.826.0.1.3680043.8.498.123456789", "1.2.3", "", ""),
    ("2.25.12345678901234567890", "1.2.840.1", "VERSION_16_CHARS", "ABCDEFGHIJKLMNOP"),
]


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless])
@pytest.mark.parametrize("identity", IDENTITIES, ids=lambda i: f"uid{len(i[0])}-ae{len(i[3])}")
def test_file_header_reads_back_exactly(
    encoded: dict[str, Path], syntax: UID, identity: tuple[str, str, str, str]
) -> None:
    instance, implementation, version, ae_title = identity
    source = encoded[str(syntax)]
    _, offset = split_dataset(source)
    payload = source.read_bytes()[offset:]
    header = file_header(
        CT_IMAGE, instance, str(syntax),
        implementation_class_uid=implementation,
        implementation_version_name=version,
        source_ae_title=ae_title,
    )  # fmt: skip
    assert header[:132] == b"\0" * 128 + b"DICM" and len(header) % 2 == 0

    ds = pydicom.dcmread(BytesIO(header + payload))
    meta = ds.file_meta
    assert meta.FileMetaInformationGroupLength == len(header) - 132 - 12
    assert meta.FileMetaInformationVersion == b"\0\1"
    assert meta.MediaStorageSOPClassUID == CT_IMAGE
    assert meta.MediaStorageSOPInstanceUID == instance
    assert meta.TransferSyntaxUID == syntax
    assert meta.ImplementationClassUID == implementation
    assert meta.ImplementationVersionName == version
    assert meta.SourceApplicationEntityTitle == ae_title
    assert [f"{element.tag:08X}" for element in meta] == [
        "00020000", "00020001", "00020002", "00020003", "00020010", "00020012", "00020013",
        "00020016",
    ]  # fmt: skip
    # The data set reads as the one sent, in the syntax the header names.
    sent = pydicom.dcmread(source)
    assert ds == sent
    assert ds.original_encoding == sent.original_encoding
    assert ds.PixelData == sent.PixelData

    # Byte for byte what pynetdicom's own encoder writes for the same values.
    expected = create_file_meta(
        sop_class_uid=UID(CT_IMAGE),
        sop_instance_uid=UID(instance),
        transfer_syntax=syntax,
        implementation_uid=UID(implementation),
        implementation_version=version,
    )
    expected.SourceApplicationEntityTitle = ae_title
    assert header[132:] == encode_file_meta(expected)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"source_ae_title": "MÜNCHEN"}, "not ASCII"),
        ({"implementation_version_name": "VERSIÓN"}, "not ASCII"),
        ({"sop_instance_uid": "1.2.3.\u0664"}, "not ASCII"),
        ({"sop_instance_uid": "1." * 40_000}, "longer than 65535"),
    ],
    ids=["ae-title", "version-name", "uid", "too-long"],
)
def test_file_header_refuses_what_it_cannot_encode(values: dict[str, str], message: str) -> None:
    arguments = {
        "sop_class_uid": CT_IMAGE,
        "sop_instance_uid": "1.2.3",
        "transfer_syntax_uid": str(ExplicitVRLittleEndian),
        "implementation_class_uid": "1.2.3",
        "implementation_version_name": "V1",
        "source_ae_title": "AE",
        **values,
    }
    with pytest.raises(ValueError, match=message):
        file_header(**arguments)
