"""Mutated DICOM instances for fuzzing, drawn by hypothesis (shrinkable, reproducible).

A seed is a small synthetic CT slice in one of four encodings (explicit and implicit VR
little endian, deflated, RLE). It is split into its file meta bytes and a flat list of
top-level data elements, so that a mutation can do what pydicom's writer would refuse:
give an element a wrong VR, a value that does not fit its VR, a length that lies, delete
or insert any tag, put tags out of order. Then the data set is encoded again (and
deflated again where the seed was) and byte-level damage is applied on top: bit flips,
truncation, overwritten or inserted bytes.

:func:`mutations` is the hypothesis strategy; :func:`apply` turns a seed and a drawn plan
into the bytes to send. ``dataset_only=True`` keeps the file meta intact (a C-STORE SCU
needs it to pick the presentation context; the data set is what travels).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from hypothesis import strategies as st
from pydicom.filereader import data_element_generator, read_dataset, read_preamble
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from synthetic.case import Modality, generate_case
from synthetic.dicom_attributes import StudyIdentity
from synthetic.dicom_series import DicomQuirks, write_series

LONG_LENGTH_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
VRS = sorted(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN", "SH", "SL"}
    | {"SS", "ST", "TM", "UI", "UL", "US"}
    | LONG_LENGTH_VRS
)
PIXEL_TAGS = [0x00280002, 0x00280004, 0x00280008, 0x00280010, 0x00280011, 0x00280100]
PIXEL_TAGS += [0x00280101, 0x00280102, 0x00280103, 0x7FE00010]
UID_TAGS = [0x00080016, 0x00080018, 0x0020000D, 0x0020000E, 0x00200052]
GEOMETRY_TAGS = [0x00180050, 0x00200032, 0x00200037, 0x00280030, 0x00281052, 0x00281053]
INTERESTING_TAGS = PIXEL_TAGS + UID_TAGS + GEOMETRY_TAGS + [0x00080060, 0x00200013, 0xFFFEE000]
INTERESTING_VALUES = [
    b"", b"\x00", b"\xff\xff", b"\x00\x00", b"\xff\xff\xff\xff", b"\x00\x80", b"\x01\x00",
    b"\x08\x00", b"\x10\x00", b"\x20\x00", b"\x40\x00", b"\x11\x00", b"-1", b"0", b"1e308",
    b"NaN", b"inf", b"abc", b"1\\2\\3\\4\\5\\6\\7", b"1.2.840.10008.1.2.4.80", b"1..2",
    b"../../../etc/passwd", b"\xc3\x28", b"9" * 65, b"A" * 70000, b"1.2." + b"3" * 200,
]  # fmt: skip
UINT32_LIES = [0, 1, 2, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 65536]


@dataclass
class Element:
    tag: int
    vr: str | None  # None in implicit VR data sets
    value: bytes
    undefined: bool = False  # encapsulated pixel data (PS3.5 A.4)
    length_lie: int | None = None


@dataclass
class Seed:
    name: str
    syntax: UID
    meta: bytes  # preamble, "DICM" and the File Meta Information (PS3.10 7.1)
    elements: list[Element] = field(default_factory=list)

    @property
    def implicit(self) -> bool:
        return self.syntax == ImplicitVRLittleEndian


def _split(data: bytes, name: str) -> Seed:
    stream = io.BytesIO(data)
    read_preamble(stream, False)
    meta = read_dataset(stream, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
    syntax = UID(meta.TransferSyntaxUID)
    offset = stream.tell()
    body = data[offset:]
    if syntax == DeflatedExplicitVRLittleEndian:
        body = zlib.decompress(body, -zlib.MAX_WBITS)
    implicit = syntax == ImplicitVRLittleEndian
    seed = Seed(name, syntax, data[:offset])
    for raw in data_element_generator(io.BytesIO(body), implicit, True):
        seed.elements.append(
            Element(
                int(raw.tag),
                None if implicit else raw.VR,
                bytes(raw.value or b""),
                undefined=getattr(raw, "length", 0) == 0xFFFFFFFF,
            )
        )
    return seed


def make_seeds(folder: Path) -> list[Seed]:
    """Three slices of one small synthetic CT series, each slice in four encodings."""
    case = generate_case(7, Modality.CT, spacing=(1.5, 0.6, 0.6), fov_mm=(4.5, 12.0, 12.0))
    identity = StudyIdentity.synthetic(7, Modality.CT, "fuzz")
    written = write_series(case, folder, DicomQuirks(), identity)
    seeds = []
    for path in written.files[:3]:
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                       DeflatedExplicitVRLittleEndian, RLELossless):  # fmt: skip
            ds = pydicom.dcmread(path)
            if syntax == RLELossless:
                ds.compress(RLELossless)
            else:
                ds.file_meta.TransferSyntaxUID = syntax
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian)
            seeds.append(_split(out.getvalue(), f"{path.stem}:{syntax.name}"))
    return seeds


def _encode_element(element: Element, implicit: bool) -> bytes:
    value = element.value + (b"\0" if len(element.value) % 2 else b"")
    length = 0xFFFFFFFF if element.undefined else len(value)
    if element.length_lie is not None:
        length = element.length_lie
    group, number = element.tag >> 16, element.tag & 0xFFFF
    if implicit or element.vr is None:
        header = struct.pack("<HHI", group, number, length)
    elif element.vr in LONG_LENGTH_VRS:
        header = struct.pack("<HH2sHI", group, number, element.vr.encode(), 0, length)
    else:
        header = struct.pack("<HH2sH", group, number, element.vr.encode(), length & 0xFFFF)
    trailer = b"\xfe\xff\xdd\xe0\0\0\0\0" if element.undefined else b""
    return header + value + trailer


def encode(seed: Seed, elements: list[Element]) -> tuple[bytes, bytes]:
    """(file meta bytes, data set bytes as they travel: deflated where the seed was)."""
    body = b"".join(_encode_element(e, seed.implicit) for e in elements)
    if seed.syntax == DeflatedExplicitVRLittleEndian:
        deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = deflater.compress(body) + deflater.flush()
    return seed.meta, body


# ------------------------------------------------------------------------ strategies

_position = st.floats(min_value=0, max_value=1, exclude_max=True)
_tag = st.one_of(st.sampled_from(INTERESTING_TAGS), st.integers(0, 0xFFFFFFFF))
_value = st.one_of(st.sampled_from(INTERESTING_VALUES), st.binary(max_size=64))

ELEMENT_OPS = st.one_of(
    st.tuples(st.just("delete"), st.one_of(st.sampled_from(INTERESTING_TAGS), _position)),
    st.tuples(st.just("insert"), _tag, st.sampled_from(VRS), _value, st.booleans()),
    st.tuples(st.just("wrong_vr"), st.sampled_from(INTERESTING_TAGS), st.sampled_from(VRS)),
    st.tuples(st.just("set_value"), st.sampled_from(INTERESTING_TAGS), _value),
    st.tuples(
        st.just("length_lie"),
        st.sampled_from(INTERESTING_TAGS + [0x7FE00010] * 4),
        st.sampled_from(UINT32_LIES),
    ),
    st.tuples(st.just("pixels"), st.sampled_from(["empty", "half", "double", "drop_last"])),
    st.tuples(st.just("swap"), _position, _position),
)
BYTE_OPS = st.one_of(
    st.tuples(st.just("flip"), st.lists(_position, min_size=1, max_size=16), st.integers(0, 7)),
    st.tuples(st.just("truncate"), _position),
    st.tuples(st.just("overwrite"), _position, st.binary(min_size=1, max_size=32)),
    st.tuples(st.just("insert_bytes"), _position, st.binary(min_size=1, max_size=32)),
    st.tuples(st.just("uint32"), _position, st.sampled_from(UINT32_LIES)),
)


@st.composite
def mutations(draw: Any, seeds: int) -> dict[str, Any]:
    """A plan: which seed, element-level ops, byte-level ops (on the data set or whole file)."""
    return {
        "seed": draw(st.integers(0, seeds - 1)),
        "elements": draw(st.lists(ELEMENT_OPS, max_size=4)),
        "bytes": draw(st.lists(BYTE_OPS, max_size=3)),
        "whole_file": draw(st.booleans()),
    }


def _find(elements: list[Element], key: Any) -> int | None:
    if isinstance(key, float):
        return int(key * len(elements)) if elements else None
    return next((i for i, e in enumerate(elements) if e.tag == key), None)


def _element_op(elements: list[Element], op: tuple[Any, ...], implicit: bool) -> None:
    kind, *args = op
    if kind == "insert":
        tag, vr, value, in_order = args
        element = Element(tag, None if implicit else vr, value)
        place = next((i for i, e in enumerate(elements) if e.tag > tag), len(elements))
        elements.insert(place if in_order else len(elements) // 2, element)
        return
    if kind == "pixels":
        at = _find(elements, 0x7FE00010)
        if at is None or elements[at].undefined:
            return
        pixels = elements[at].value
        elements[at].value = {"empty": b"", "half": pixels[: len(pixels) // 2],
                              "double": pixels * 2, "drop_last": pixels[:-2]}[args[0]]  # fmt: skip
        return
    if kind == "swap":
        i, j = _find(elements, args[0]), _find(elements, args[1])
        if i is not None and j is not None:
            elements[i], elements[j] = elements[j], elements[i]
        return
    at = _find(elements, args[0])
    if at is None:
        return
    if kind == "delete":
        del elements[at]
    elif kind == "wrong_vr" and not implicit:
        elements[at].vr = args[1]
    elif kind == "set_value":
        elements[at].value = args[1]
    elif kind == "length_lie":
        elements[at].length_lie = args[1]


def _byte_op(data: bytes, op: tuple[Any, ...]) -> bytes:
    kind, *args = op
    if not data:
        return data
    if kind == "flip":
        buffer = bytearray(data)
        for position in args[0]:
            buffer[int(position * len(buffer))] ^= 1 << args[1]
        return bytes(buffer)
    at = int(args[0] * len(data))
    if kind == "truncate":
        return data[:at]
    if kind == "overwrite":
        return data[:at] + args[1] + data[at + len(args[1]) :]
    if kind == "insert_bytes":
        return data[:at] + args[1] + data[at:]
    return data[:at] + struct.pack("<I", args[1]) + data[at + 4 :]  # uint32


def apply(seeds: list[Seed], plan: dict[str, Any], dataset_only: bool) -> tuple[Seed, bytes]:
    """The seed and the mutated bytes: a whole Part 10 file, or (``dataset_only``) its data
    set after the seed's unchanged file meta."""
    seed = seeds[plan["seed"]]
    elements = [Element(e.tag, e.vr, e.value, e.undefined) for e in seed.elements]
    for op in plan["elements"]:
        _element_op(elements, op, seed.implicit)
    meta, body = encode(seed, elements)
    if dataset_only or not plan["whole_file"]:
        for op in plan["bytes"]:
            body = _byte_op(body, op)
        return seed, meta + body
    data = meta + body
    for op in plan["bytes"]:
        data = _byte_op(data, op)
    return seed, data


def describe(plan: dict[str, Any], seeds: list[Seed]) -> str:
    """A one-line, replayable description of a plan (for failure reports)."""
    short = {**plan, "elements": [tuple(a if not isinstance(a, bytes) or len(a) < 40
                                        else a[:8] + b"..." for a in op)
                                  for op in plan["elements"]]}  # fmt: skip
    return f"{seeds[plan['seed']].name} {short}"
