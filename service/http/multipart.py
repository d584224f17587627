"""Media types, content negotiation and multipart bodies (RFC 2046, RFC 2387, RFC 9110).

STOW-RS requests are ``multipart/related; type="application/dicom"`` (PS3.18 8.6.1.2,
10.5.1): :func:`iter_parts` reads one as a stream, handing back each part as soon as its
closing boundary arrives, so memory holds one instance at a time, not the whole study.
A part cut short (no closing boundary) is never handed back: a truncated instance must
not be stored. :func:`related_stream` writes the multipart responses of the result
endpoint (PS3.18 8.6.1.2 as well).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool


class MalformedBodyError(ValueError):
    """The multipart body cannot be read (what is wrong is in the message)."""


@dataclass(frozen=True)
class MediaType:
    """A parsed media type: lower-case ``type/subtype``, parameters by lower-case name."""

    essence: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str | None) -> MediaType:
        essence, params = parse_options_header(value or "")
        return cls(
            essence.decode("latin-1").strip().lower(),
            {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in params.items()},
        )

    def matches(self, offer: MediaType) -> bool:
        """This media range (from Accept) admits ``offer`` (RFC 9110 12.5.1)."""
        kind, _, sub = self.essence.partition("/")
        offer_kind, _, offer_sub = offer.essence.partition("/")
        if kind not in ("*", offer_kind) or sub not in ("*", offer_sub):
            return False
        wanted_type = self.params.get("type")  # e.g. multipart/related; type=application/dicom
        return wanted_type is None or wanted_type.lower() == offer.params.get("type", "").lower()

    @property
    def specificity(self) -> int:
        """``*/*`` 0, ``type/*`` 1, ``type/subtype`` 2, with a ``type`` parameter 3."""
        kind, _, sub = self.essence.partition("/")
        return (kind != "*") + (sub != "*") + ("type" in self.params)


def negotiate(accept: str | None, offers: list[str]) -> str | None:
    """The offer the Accept header prefers (first offer on ties or no header); None: 406."""
    if not accept or not accept.strip():
        return offers[0]
    ranges: list[tuple[float, MediaType]] = []
    for item in accept.split(","):
        media = MediaType.parse(item)
        try:
            quality = float(media.params.pop("q", "1"))
        except ValueError:
            quality = 0.0
        if media.essence:
            ranges.append((quality, media))
    best: tuple[float, str] | None = None
    for offer in offers:
        parsed = MediaType.parse(offer)
        # The most specific matching range decides (RFC 9110 12.5.1: "*/*, a/b;q=0" refuses
        # a/b); among equally specific ones, the highest q.
        scores = [(media.specificity, q) for q, media in ranges if media.matches(parsed)]
        score = max(scores)[1] if scores else 0.0
        if score > 0 and (best is None or score > best[0]):
            best = (score, offer)
    return best[1] if best else None


@dataclass
class Part:
    headers: dict[str, str]
    data: bytes
    too_large: bool = False  # over max_part_bytes: data dropped, the rest still read

    @property
    def media_type(self) -> MediaType:
        return MediaType.parse(self.headers.get("content-type"))


async def iter_parts(
    chunks: AsyncIterator[bytes], boundary: str, max_part_bytes: int
) -> AsyncIterator[Part]:
    """Each complete part of a multipart body, in order, while the body streams in."""
    if not boundary or len(boundary) > 70:  # RFC 2046 5.1.1
        raise MalformedBodyError("the Content-Type has no valid boundary parameter")
    finished: list[Part] = []
    headers: dict[str, str] = {}
    name, value, data = bytearray(), bytearray(), bytearray()
    ended = too_large = False

    def on_part_begin() -> None:
        nonlocal too_large
        headers.clear()
        data.clear()
        too_large = False

    def on_header_field(chunk: bytes, start: int, end: int) -> None:
        name.extend(chunk[start:end])

    def on_header_value(chunk: bytes, start: int, end: int) -> None:
        value.extend(chunk[start:end])

    def on_header_end() -> None:
        headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
        name.clear()
        value.clear()

    def on_part_data(chunk: bytes, start: int, end: int) -> None:
        nonlocal too_large
        if too_large or len(data) + end - start > max_part_bytes:
            too_large = True
            data.clear()
            return
        data.extend(chunk[start:end])

    def on_part_end() -> None:
        finished.append(Part(dict(headers), bytes(data), too_large))
        data.clear()

    def on_end() -> None:
        nonlocal ended
        ended = True

    parser = MultipartParser(
        boundary.encode("latin-1"),
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
    )
    try:
        async for chunk in chunks:
            if chunk:
                parser.write(chunk)
            while finished:
                yield finished.pop(0)
        parser.finalize()
    except MultipartParseError as error:
        raise MalformedBodyError(f"the multipart body is malformed: {error}") from None
    while finished:
        yield finished.pop(0)
    if not ended:
        raise MalformedBodyError("the multipart body ends before its closing boundary")


def related_stream(paths: list[Path], part_type: str) -> tuple[AsyncIterator[bytes], str]:
    """A ``multipart/related`` body of the files ``paths`` (each of ``part_type``), streamed
    in 1 MiB chunks (an uncertainty map can be hundreds of MB), and its media type."""
    boundary = f"minivess-{uuid.uuid4().hex}"

    async def body() -> AsyncIterator[bytes]:
        for path in paths:
            yield f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode()
            with open(path, "rb") as handle:
                while chunk := await run_in_threadpool(handle.read, 2**20):
                    yield chunk
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return body(), f'multipart/related; type="{part_type}"; boundary={boundary}'
