"""The audit log's hash chain, standard library only (Python >= 3.8).

The one implementation behind ``compliance.audit`` (the appliance and the builder, which
check each entry against their pydantic schema on top) and ``sitectl.py`` (deploy.sh on
a site, before any image is trusted).

A log is JSON lines. ``entry_hash`` is the SHA-256 of an entry's canonical JSON (every
field except ``entry_hash``, keys sorted, no spaces, UTF-8) and ``prev_hash`` is the
``entry_hash`` of the entry before it (64 zeros for the first). An append holds an
exclusive ``flock`` on the file (flock locks belong to the open file, so threads and
processes that each open the log exclude each other), reads the last entry back from
the end, writes its line with one ``write`` on an ``O_APPEND`` descriptor and ``fsync``s
before the lock is released. A torn (unterminated) last line is kept as evidence: the
next line starts with a newline and chains to the last complete entry.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

GENESIS_HASH = "0" * 64
TAIL_CHUNK = 64 * 1024


def utc_timestamp() -> str:
    """Now, in UTC, ISO 8601 with microseconds and a ``Z``."""
    now = dt.datetime.now(dt.timezone.utc)  # noqa: UP017 (sites may run Python 3.8)
    return now.isoformat(timespec="microseconds").replace("+00:00", "Z")


def canonical_json(data: dict[str, Any]) -> bytes:
    """The bytes that are hashed and written: sorted keys, no whitespace, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(data: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of an entry without its ``entry_hash``."""
    body = {key: value for key, value in data.items() if key != "entry_hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def chain_link(line: bytes) -> tuple[int, str] | None:
    """(sequence, entry_hash) of a line that holds an entry, or None (torn, unreadable).

    Only what the chain needs is checked; the stored hash is not recomputed: the next
    entry chains to what is written, so an edited last entry shows in a verify as that.
    """
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("sequence"), int):
        return None
    digest = data.get("entry_hash")
    return (data["sequence"], digest) if isinstance(digest, str) and len(digest) == 64 else None


def read_tail(
    fd: int, link: Callable[[bytes], tuple[int, str] | None] = chain_link
) -> tuple[int, str, bool]:
    """(last sequence, last entry hash, torn) of the log open at ``fd``.

    Walks back from the end to the last line that ``link`` reads as an entry; ``torn`` is
    true when the file does not end with a newline (a crash may cut a line just before
    its newline: then that entry is complete and is the last). An empty log gives
    (0, genesis, False).
    """
    size = os.fstat(fd).st_size
    if size == 0:
        return 0, GENESIS_HASH, False
    torn = os.pread(fd, 1, size - 1) != b"\n"
    end, buffer = size, b""
    while end > 0:
        start = max(0, end - TAIL_CHUNK)
        buffer = os.pread(fd, end - start, start) + buffer
        end = start
        lines = buffer.split(b"\n")
        # lines[0] may be partial unless the start of the file was reached.
        for line in reversed(lines if end == 0 else lines[1:]):
            found = link(line) if line.strip() else None
            if found is not None:
                return found[0], found[1], torn
    return 0, GENESIS_HASH, torn


@contextmanager
def locked(path: Path) -> Iterator[int]:
    """The log (and its folder) created if need be, open for appending under ``flock``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_line(fd: int, line: bytes, torn: bool) -> None:
    """Append one newline-terminated entry line (after a newline that ends a torn line)
    and make it durable."""
    os.write(fd, b"\n" + line if torn else line)
    os.fsync(fd)
