"""The durable receive spool: every accepted instance is on disk before we say so.

Layout: ``spool/<StudyInstanceUID>/<SOPInstanceUID>.dcm`` (DICOM Part 10 files, the
bytes exactly as received) and ``spool/.tmp/`` for files being written. An instance is
written to a temporary file, flushed and ``fsync``-ed, renamed into its study folder and
the folder ``fsync``-ed: only then does the C-STORE SCP return Success (PS3.4 B.2.3, a
Storage SCP that answers Success has taken responsibility for the instance; PS3.4
B.4.1 level 2 storage). The pipeline reads a study folder, never ``.tmp``.

UIDs become file names only after :func:`is_uid` (PS3.5 9.1: digits and dots, at most
64 characters), so a hostile UID cannot escape the spool.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
TMP_DIR = ".tmp"
SUFFIX = ".dcm"


def is_uid(value: str) -> bool:
    """True for a syntactically valid DICOM UID (PS3.5 9.1)."""
    return len(value) <= 64 and _UID.match(value) is not None


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (POSIX: fsync the directory)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class SpooledFile:
    study_uid: str
    sop_uid: str
    path: Path
    size: int
    mtime: float


class Spool:
    """The spool folder; thread-safe (each write uses its own temporary file)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / TMP_DIR
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._bytes = 0

    @property
    def bytes_held(self) -> int:
        """Bytes of the spooled instances (kept up to date by store/remove/scan)."""
        return self._bytes

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def study_dir(self, study_uid: str) -> Path:
        if not is_uid(study_uid):
            raise ValueError(f"not a DICOM UID: {study_uid!r}")
        return self.root / study_uid

    def path_of(self, study_uid: str, sop_uid: str) -> Path:
        if not is_uid(sop_uid):
            raise ValueError(f"not a DICOM UID: {sop_uid!r}")
        return self.study_dir(study_uid) / (sop_uid + SUFFIX)

    def store(self, study_uid: str, sop_uid: str, data: bytes) -> Path:
        """Write ``data`` durably as the instance's spool file and return its path."""
        target = self.path_of(study_uid, sop_uid)
        folder = target.parent
        if not folder.is_dir():
            folder.mkdir(exist_ok=True)
            fsync_dir(self.root)
        temporary = self.tmp / f"{uuid.uuid4().hex}.part"
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            replaced = target.exists()
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        fsync_dir(folder)
        with self._lock:
            self._bytes += 0 if replaced else len(data)
        return target

    def remove(self, paths: Iterable[Path]) -> None:
        """Delete spooled files (and their study folders once empty)."""
        folders: set[Path] = set()
        for path in paths:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            with self._lock:
                self._bytes -= size
            folders.add(path.parent)
        for folder in folders:
            try:
                folder.rmdir()  # only when empty: an instance may just have arrived
            except OSError:
                fsync_dir(folder)
        if folders:
            fsync_dir(self.root)

    def scan(self) -> Iterator[SpooledFile]:
        """Every spooled instance on disk (start-up reconciliation); resets the byte count.

        Also removes leftovers of interrupted writes in ``.tmp`` (never acknowledged).
        """
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
        total = 0
        found: list[SpooledFile] = []
        for folder in sorted(self.root.iterdir()):
            if folder.name == TMP_DIR or not folder.is_dir() or not is_uid(folder.name):
                continue
            for path in sorted(folder.glob("*" + SUFFIX)):
                sop_uid = path.name[: -len(SUFFIX)]
                if not is_uid(sop_uid):
                    continue
                stat = path.stat()
                total += stat.st_size
                found.append(SpooledFile(folder.name, sop_uid, path, stat.st_size, stat.st_mtime))
        with self._lock:
            self._bytes = total
        yield from found
