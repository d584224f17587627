"""Writing the bundle: a plain tar, members in the given order, owner root, fixed times.

``write_tar`` hashes the archive while it writes it (the ``.sha256`` next to the bundle
needs no second pass over 650 MB).
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import IO


class _HashingWriter:
    """A write-only file that hashes what passes through (tarfile needs write and tell)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle, self.digest, self.offset = handle, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.offset += len(data)
        return self.handle.write(data)

    def tell(self) -> int:
        return self.offset


def write_tar(target: Path, members: list[tuple[str, Path | bytes]], epoch: int) -> str:
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as handle:
        writer = _HashingWriter(handle)
        with tarfile.open(fileobj=writer, mode="w", format=tarfile.PAX_FORMAT) as archive:  # type: ignore[call-overload]
            for name, source in members:
                info = tarfile.TarInfo(name)
                info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
                info.mode = 0o755 if name.endswith(".sh") else 0o644
                if isinstance(source, bytes):
                    info.size = len(source)
                    archive.addfile(info, _BytesReader(source))
                else:
                    info.size = source.stat().st_size
                    with source.open("rb") as data:
                        archive.addfile(info, data)
    partial.rename(target)
    return writer.digest.hexdigest()


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.at + size
        chunk, self.at = self.data[self.at : end], min(end, len(self.data))
        return chunk
