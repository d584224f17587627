"""The appliance image for a bundle: its OCI archive and its facts, cached per image id.

``podman save --format oci-archive`` of the 2 GB appliance image takes ~35 s on 2 cores
(~650 MB, gzipped layers) and probing it (``bundle/probe.py`` in a container: models,
Debian packages, the Python environment's SBOM) ~15 s; both depend only on the image,
so they are kept under the cache folder (default ``var/bundle/cache``), keyed by the
image id, and a rebuilt bundle of the same image (a new release number) takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from containers import podman
from containers.commands import ContainerBuildError, Log

PROBE = Path(__file__).with_name("probe.py")
KEEP_CACHED_IMAGES = 3


@dataclass(frozen=True)
class ImageRef:
    """A local image, as the manifest records it."""

    ref: str
    id: str  # 64 hex digits, no "sha256:"
    version: str
    revision: str
    created: str
    variant: str


def describe_image(ref: str) -> ImageRef:
    """The id and OCI labels of a local image (built by containers.build or given)."""
    labels = podman.image_labels(ref)
    if labels is None:
        raise ContainerBuildError(f"no local image {ref}")
    image_id = podman.image_id(ref).removeprefix("sha256:")
    return ImageRef(
        ref=ref,
        id=image_id,
        version=labels.get("org.opencontainers.image.version", "unknown"),
        revision=labels.get("org.opencontainers.image.revision", "unknown"),
        created=labels.get("org.opencontainers.image.created", "unknown"),
        variant=labels.get("io.minivess.image.variant", "cpu"),
    )


def _prune(cache_dir: Path, keep_id: str) -> None:
    """Keep the archives of the few most recently used images only (each ~650 MB)."""
    archives = sorted(cache_dir.glob("*.oci.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in archives[KEEP_CACHED_IMAGES:]:
        if not old.name.startswith(keep_id):
            image = old.name.split(".", 1)[0]
            for path in cache_dir.glob(f"{image}.*"):
                path.unlink(missing_ok=True)


def oci_archive(image: ImageRef, cache_dir: Path, log: Log) -> Path:
    """The image as an OCI archive (``podman save --format oci-archive``), from cache."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    # The name it is saved under is inside the archive (podman load restores it).
    name_key = hashlib.sha256(image.ref.encode()).hexdigest()[:8]
    archive = cache_dir / f"{image.id}.{name_key}.oci.tar"
    if archive.is_file():
        os.utime(archive)
        log(f"image archive: cached {archive.name}")
        return archive
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    log(f"image archive: podman save --format oci-archive {image.ref} ...")
    podman.podman("save", "--format", "oci-archive", "-o", str(partial), image.ref, timeout=1800)
    partial.rename(archive)
    _prune(cache_dir, image.id)
    log(f"image archive: {archive.stat().st_size / 1e6:.0f} MB")
    return archive


def sbom_tool_path() -> Path:
    """site-packages of this environment (cyclonedx-bom and its dependencies)."""
    path = Path(sysconfig.get_paths()["purelib"])
    if not (path / "cyclonedx_py").is_dir():
        raise ContainerBuildError(
            f"cyclonedx-bom is not installed in {sys.prefix} (the 'release' dependency group)"
        )
    return path


def image_facts(image: ImageRef, cache_dir: Path, log: Log) -> dict[str, Any]:
    """What ``bundle/probe.py`` reports from inside the image (cached per image id)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = cache_dir / f"{image.id}.facts.json"
    if cached.is_file():
        return dict(json.loads(cached.read_text()))
    log(f"image facts: probing {image.ref} (models, packages, SBOM) ...")
    done = podman.podman(
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,size=256m",
        "--entrypoint",
        "python3",
        "-v",
        f"{PROBE}:/probe/probe.py:ro",
        "-v",
        f"{sbom_tool_path()}:/sbomtool:ro",
        image.id,
        "/probe/probe.py",
        "/sbomtool",
        timeout=600,
    )
    facts = json.loads(done.stdout)
    partial = cached.with_suffix(".partial")
    partial.write_text(json.dumps(facts))
    partial.rename(cached)
    return dict(facts)


def clear_cache(cache_dir: Path, image_id: str) -> None:
    """Remove what the cache holds for one image (tests clean up their throwaway images)."""
    for path in cache_dir.glob(f"{image_id}.*"):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
