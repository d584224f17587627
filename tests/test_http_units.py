"""The HTTP API's pure logic, called directly (no server): media-type negotiation
(the Accept header of STOW-RS and of job results) and the STOW-RS multipart reader."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from service.http.multipart import MalformedBodyError, MediaType, Part, iter_parts, negotiate

DICOM_JSON = "application/dicom+json"
JSON = "application/json"
ZIP = "application/zip"
RELATED_DICOM = 'multipart/related; type="application/dicom"'

# ------------------------------------------------------------ media-type negotiation


@pytest.mark.requirement("SRS-045")
@pytest.mark.parametrize(
    ("accept", "offers", "chosen"),
    [
        (None, [DICOM_JSON, JSON], DICOM_JSON),  # no header: the first offer
        ("  ", [DICOM_JSON, JSON], DICOM_JSON),
        ("*/*", [DICOM_JSON, JSON], DICOM_JSON),
        ("application/*", [ZIP, RELATED_DICOM], ZIP),
        ("APPLICATION/JSON", [DICOM_JSON, JSON], JSON),  # case-insensitive
        (f"{DICOM_JSON};q=0.5, {JSON}", [DICOM_JSON, JSON], JSON),  # the higher q wins
        (f"{DICOM_JSON};q=0.9, {JSON};q=0.9", [DICOM_JSON, JSON], DICOM_JSON),  # tie: first
        (f"{JSON}, */*;q=0.1", [DICOM_JSON, JSON], JSON),
        ("multipart/related; type=application/dicom", [ZIP, RELATED_DICOM], RELATED_DICOM),
        ("multipart/*", [ZIP, RELATED_DICOM], RELATED_DICOM),
        # The most specific range decides (RFC 9110 12.5.1): dicom+json is refused here.
        (f"*/*;q=0.2, {DICOM_JSON};q=0", [DICOM_JSON, JSON], JSON),
        (f"{DICOM_JSON};q=0, */*", [DICOM_JSON, JSON], JSON),
        (f"application/*;q=0.1, */*;q=0.9, {ZIP};q=0.2", [ZIP, "text/plain"], "text/plain"),
    ],
)
def test_negotiate_picks_the_preferred_offer(
    accept: str | None, offers: list[str], chosen: str
) -> None:
    assert negotiate(accept, offers) == chosen


@pytest.mark.requirement("SRS-045")
@pytest.mark.parametrize(
    ("accept", "offers"),
    [
        ("text/html", [DICOM_JSON, JSON]),
        ("image/*", [ZIP, RELATED_DICOM]),
        ("*/*;q=0", [DICOM_JSON, JSON]),  # q=0: "not acceptable"
        (f"{DICOM_JSON};q=0, {JSON};q=0", [DICOM_JSON, JSON]),
        ("multipart/related; type=application/octet-stream", [RELATED_DICOM]),
        (f"{DICOM_JSON};q=high", [DICOM_JSON]),  # a malformed q is no preference
    ],
)
def test_negotiate_refuses_when_nothing_is_acceptable(accept: str, offers: list[str]) -> None:
    assert negotiate(accept, offers) is None  # the endpoint answers 406


def test_media_type_parse_lowercases_names_but_keeps_values() -> None:
    media = MediaType.parse('Multipart/Related; Type="application/dicom"; BOUNDARY=AbC')
    assert media.essence == "multipart/related"
    assert media.params == {"type": "application/dicom", "boundary": "AbC"}
    assert MediaType.parse(None).essence == "" and Part({}, b"").media_type.essence == ""


# ------------------------------------------------------------------ multipart reader


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]
    yield b""  # an empty chunk (a keep-alive) is harmless


def read(body: bytes, boundary: str = "XyZ", limit: int = 1000, size: int = 5) -> list[Part]:
    """All parts, or MalformedBodyError; parts before the error are in ``read.seen``."""
    seen: list[Part] = []

    async def collect() -> None:
        async for part in iter_parts(_chunks(body, size), boundary, limit):
            seen.append(part)

    read.seen = seen  # type: ignore[attr-defined]
    asyncio.run(collect())
    return seen


def body(*parts: bytes, close: bytes = b"--XyZ--\r\n") -> bytes:
    return b"".join(b"--XyZ\r\n" + part + b"\r\n" for part in parts) + close


DCM = b"Content-Type: application/dicom\r\n\r\n"


@pytest.mark.requirement("SRS-045")
@pytest.mark.parametrize("size", [1, 3, 64, 10_000])  # however the body is chunked
def test_parts_come_back_in_order_with_their_headers(size: int) -> None:
    parts = read(
        body(DCM + b"first", b"Content-Type: Application/DICOM\r\n\r\n\r\nx\r\n"), size=size
    )
    assert [p.data for p in parts] == [b"first", b"\r\nx\r\n"]  # CRLFs inside data are data
    assert [p.media_type.essence for p in parts] == ["application/dicom"] * 2
    assert not any(p.too_large for p in parts)


@pytest.mark.requirement("SRS-045")
def test_a_part_without_content_type_has_no_media_type() -> None:
    (part,) = read(body(b"\r\nraw"))
    assert part.headers == {} and part.media_type.essence == "" and part.data == b"raw"


@pytest.mark.requirement("SRS-045")
@pytest.mark.parametrize("close", [b"--XyZ--", b"--XyZ--\r\n", b"--XyZ--\r\nan epilogue\r\n"])
def test_the_closing_boundary_needs_no_trailing_crlf(close: bytes) -> None:
    assert [p.data for p in read(body(DCM + b"a", close=close))] == [b"a"]


@pytest.mark.requirement("SRS-045", "SRS-072")
@pytest.mark.parametrize("boundary", ["", "x" * 71])
def test_a_missing_or_overlong_boundary_is_refused(boundary: str) -> None:
    with pytest.raises(MalformedBodyError, match="no valid boundary"):
        read(body(DCM + b"a"), boundary=boundary)


@pytest.mark.requirement("SRS-045", "SRS-072")
def test_a_body_with_another_boundary_is_malformed() -> None:
    with pytest.raises(MalformedBodyError, match="malformed"):
        read(body(DCM + b"a"), boundary="Other")


@pytest.mark.requirement("SRS-045", "SRS-072")
def test_a_preamble_is_refused() -> None:  # documented in service.http.stow
    with pytest.raises(MalformedBodyError, match="malformed"):
        read(b"This is a preamble.\r\n" + body(DCM + b"a"))


@pytest.mark.requirement("SRS-045", "SRS-072")
@pytest.mark.parametrize(
    ("cut", "handed_back"),
    [
        (b"", []),  # no boundary after the data: it may go on, so it is not handed back
        (b"--XyZ", []),
        (b"--XyZ\r\n" + DCM + b"partial data", [b"complete"]),
    ],
)
def test_a_truncated_body_never_hands_back_the_cut_part(
    cut: bytes, handed_back: list[bytes]
) -> None:
    whole = body(DCM + b"complete", close=cut)
    with pytest.raises(MalformedBodyError, match="before its closing boundary"):
        read(whole)
    assert [p.data for p in read.seen] == handed_back  # type: ignore[attr-defined]


@pytest.mark.requirement("SRS-045", "SRS-072")
def test_an_empty_body_has_no_closing_boundary() -> None:
    with pytest.raises(MalformedBodyError, match="before its closing boundary"):
        read(b"")
    assert read(b"--XyZ--\r\n") == []  # well-formed, no parts: the endpoint says 400


@pytest.mark.requirement("SRS-045", "SRS-072")
def test_an_oversized_part_is_flagged_and_the_next_part_still_read() -> None:
    parts = read(body(DCM + b"A" * 11, DCM + b"B" * 10), limit=10, size=4)
    assert [(p.too_large, p.data) for p in parts] == [(True, b""), (False, b"B" * 10)]
