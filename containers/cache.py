"""The build cache under ``var/containers/``: its folder, its lock and its keys."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

from containers.provenance import REPO_ROOT

CACHE_DIR = REPO_ROOT / "var" / "containers"
# Bump to invalidate every cache when the recipe of the build changes.
RECIPE_VERSION = "1"


@contextlib.contextmanager
def cache_lock(folder: Path = CACHE_DIR) -> Iterator[None]:
    """One builder at a time per cache folder (make image and a test session may overlap)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def digest(*parts: str | bytes) -> str:
    """SHA-256 (hex) over ``parts``, each length-prefixed: the key of a cached artefact."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()
