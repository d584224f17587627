"""The DICOM Part 10 file header of a received data set, encoded directly.

A C-STORE brings a bare data set in its negotiated transfer syntax; the spool keeps it as
a Part 10 file (PS3.10 7.1): 128-byte preamble, ``DICM``, then the File Meta Information
group (0002) in Explicit VR Little Endian, then the data set bytes exactly as received.
pynetdicom's ``Event.encoded_dataset()`` builds the same header through a pydicom
``Dataset`` and its writer, which cost about a quarter of the gateway's CPU per 128 KiB
instance; the header has eight fixed elements, so it is written here with ``struct``.
``tests/test_dicom_reactor.py`` checks it against pydicom's reading of it.
"""

from __future__ import annotations

import struct

PREAMBLE = b"\0" * 128 + b"DICM"
FILE_META_VERSION = b"\0\1"  # (0002,0001), PS3.10 7.1
_LONG_VRS = frozenset({b"OB"})  # of the VRs used here, the one with a 4-byte length


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    """One group-0002 element, Explicit VR Little Endian (PS3.5 7.1.2)."""
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", 0x0002, element, vr, 0, len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError(f"(0002,{element:04X}) longer than 65535 bytes")
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _uid(value: str) -> bytes:
    """UI value, padded with NUL to an even length (PS3.5 6.2, 9.1)."""
    encoded = value.encode("ascii")
    return encoded + b"\0" if len(encoded) % 2 else encoded


def _text(value: str) -> bytes:
    """SH/AE value, padded with a space to an even length (PS3.5 6.2)."""
    encoded = value.encode("ascii")
    return encoded + b" " if len(encoded) % 2 else encoded


def file_header(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    *,
    implementation_class_uid: str,
    implementation_version_name: str,
    source_ae_title: str,
) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information of one data set (PS3.10 7.1).

    Raises ``ValueError`` for a value that is not ASCII or longer than an element can
    hold (65,535 bytes); lengths within the VRs' limits (64 for UI, 16 for AE) are the
    caller's: the gateway passes UIDs pynetdicom has validated.
    """
    try:
        body = b"".join((
            _element(0x0001, b"OB", FILE_META_VERSION),
            _element(0x0002, b"UI", _uid(sop_class_uid)),
            _element(0x0003, b"UI", _uid(sop_instance_uid)),
            _element(0x0010, b"UI", _uid(transfer_syntax_uid)),
            _element(0x0012, b"UI", _uid(implementation_class_uid)),
            _element(0x0013, b"SH", _text(implementation_version_name)),
            _element(0x0016, b"AE", _text(source_ae_title)),
        ))  # fmt: skip
    except UnicodeEncodeError as error:
        raise ValueError(f"file meta value is not ASCII: {error}") from error
    return PREAMBLE + _element(0x0000, b"UL", struct.pack("<I", len(body))) + body
