"""SHA-256 of a file or of a binary stream, read in chunks: the project's one implementation.

It lives in ``models`` because that package is in every image that needs it (the appliance
copies ``models/*.py``, the builder ``models/``) and is importable on the host by
``bundle``, ``containers`` and ``compliance``; this module imports only the standard
library. Code that runs without the project (``airgap/`` site tools, ``bundle/probe.py``
inside an image) uses ``hashlib`` directly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO

CHUNK = 1 << 20


def sha256_stream(handle: IO[bytes]) -> tuple[str, int]:
    """SHA-256 (hex) and size in bytes of what is left to read from a binary handle."""
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def sha256_file(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    with open(path, "rb") as handle:
        return sha256_stream(handle)[0]
