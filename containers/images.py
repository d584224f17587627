"""The appliance (MAP) and builder images: ``podman build --network none``, offline.

The wheelhouse is the extra build context ``wheelhouse``; the image carries the digest
of all its inputs in a label, and an image whose label matches is reused without
building.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from containers.base_image import ensure_base_image
from containers.cache import CACHE_DIR, RECIPE_VERSION, cache_lock, digest
from containers.commands import ContainerBuildError, Log, log_to_stderr, run_logged
from containers.podman import image_id, image_labels, image_size, podman_env, require_podman
from containers.provenance import (
    REPO_ROOT,
    git_revision,
    project_version,
    rfc3339,
    source_date_epoch,
)
from containers.wheelhouse import Wheelhouse, ensure_wheelhouse

APPLIANCE_IMAGE = "localhost/minivess-appliance"
BUILDER_IMAGE = "localhost/minivess-builder"
VARIANTS = ("cpu", "gpu")
# The label with the digest of an image's inputs, so that a current image is recognised.
INPUTS_LABEL = "io.minivess.build.inputs"

# What the Dockerfiles copy from the build context (checked against their COPY lines by
# tests/test_image_build.py): the digest over these decides whether an image is current.
APPLIANCE_INPUTS = (
    "Dockerfile",
    ".dockerignore",
    "containers/entrypoint.sh",
    "map_app",
    "operators",
    "service",
    "settings",
    "synthetic",
    "compliance/__init__.py",
    "compliance/audit",
    "airgap/__init__.py",
    "airgap/auditchain.py",
    "models/*.py",
    "models/ensemble",
    "pyproject.toml",
)
BUILDER_INPUTS = (
    "models/builder/Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "uv.lock",
    "synthetic",
    "operators",
    "settings/__init__.py",
    "settings/base.py",
    "settings/site.py",
    "compliance/__init__.py",
    "compliance/audit",
    "airgap/__init__.py",
    "airgap/auditchain.py",
    "models",
)


def input_files(patterns: Iterable[str]) -> list[Path]:
    files: set[Path] = set()
    for pattern in patterns:
        for match in REPO_ROOT.glob(pattern):
            candidates = match.rglob("*") if match.is_dir() else [match]
            files.update(p for p in candidates if p.is_file())
    return sorted(
        p for p in files if "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def inputs_digest(patterns: Iterable[str], *extra: str) -> str:
    """SHA-256 over the build inputs (paths, contents, executable bits) and ``extra``."""
    parts: list[str | bytes] = [RECIPE_VERSION, *extra]
    for path in input_files(patterns):
        mode = "x" if os.access(path, os.X_OK) else "-"
        parts += [f"{path.relative_to(REPO_ROOT)}:{mode}", path.read_bytes()]
    return digest(*parts)


@dataclass(frozen=True)
class BuiltImage:
    ref: str
    image_id: str
    inputs_digest: str
    built: bool  # False: an image with the same inputs was reused
    seconds: float
    size_bytes: int
    version: str
    revision: str  # org.opencontainers.image.revision
    created: str  # org.opencontainers.image.created (from SOURCE_DATE_EPOCH)


def _build(
    *,
    dockerfile: str,
    ref: str,
    wheelhouse: Wheelhouse,
    base_image: str,
    patterns: Sequence[str],
    force: bool,
    log: Log,
) -> BuiltImage:
    started = time.monotonic()
    version, revision, epoch = project_version(), git_revision(), source_date_epoch()
    base_id = image_id(base_image) if image_labels(base_image) is not None else base_image
    variant = wheelhouse.variant
    inputs = inputs_digest(
        patterns, variant, version, revision, str(epoch), base_image, base_id, wheelhouse.digest
    )

    def image(built: bool) -> BuiltImage:
        seconds = time.monotonic() - started
        size = image_size(ref)
        return BuiltImage(
            ref, image_id(ref), inputs, built, seconds, size, version, revision, rfc3339(epoch)
        )

    labels = image_labels(ref)
    if not force and labels is not None and labels.get(INPUTS_LABEL) == inputs:
        log(f"image: {ref} is current (inputs {inputs[:12]})")
        return image(built=False)
    log(f"image: podman build {ref} ({dockerfile}, {variant}) ...")
    build_args = {
        "BASE_IMAGE": base_image,
        "VARIANT": variant,
        "VERSION": version,
        "REVISION": revision,
        "CREATED": rfc3339(epoch),
        "SOURCE_DATE_EPOCH": str(epoch),
        "WHEELHOUSE_DIGEST": wheelhouse.digest,
    }
    cmd = [require_podman(), "build", "--network", "none", "--file", dockerfile, "--tag", ref]
    cmd += ["--build-context", f"wheelhouse={wheelhouse.path}"]
    for name, value in build_args.items():
        cmd += ["--build-arg", f"{name}={value}"]
    cmd += ["--label", f"{INPUTS_LABEL}={inputs}", str(REPO_ROOT)]
    name = Path(dockerfile).parent.name or "appliance"
    run_logged(
        cmd, CACHE_DIR / "logs" / f"build-{name}-{variant}.log", "podman build", podman_env()
    )
    built = image(built=True)
    log(f"image: {ref} built in {built.seconds:.0f} s")
    return built


def appliance_ref(variant: str = "cpu") -> str:
    suffix = "" if variant == "cpu" else f"-{variant}"
    return f"{APPLIANCE_IMAGE}:{project_version()}{suffix}"


def build_appliance_image(
    variant: str = "cpu",
    *,
    ref: str | None = None,
    base_image: str | None = None,
    force: bool = False,
    refresh_base: bool = False,
    log: Log = log_to_stderr,
) -> BuiltImage:
    """The appliance image: base (mmdebstrap unless ``base_image``), wheelhouse, build."""
    if variant not in VARIANTS:
        raise ContainerBuildError(f"variant must be one of {VARIANTS}, not {variant!r}")
    require_podman()
    with cache_lock():
        base = base_image or ensure_base_image(refresh=refresh_base, log=log)
        wheelhouse = ensure_wheelhouse(variant, log=log)
        return _build(
            dockerfile="Dockerfile",
            ref=ref or appliance_ref(variant),
            wheelhouse=wheelhouse,
            base_image=base,
            patterns=APPLIANCE_INPUTS,
            force=force,
            log=log,
        )


def build_builder_image(
    *,
    ref: str | None = None,
    base_image: str | None = None,
    force: bool = False,
    log: Log = log_to_stderr,
) -> BuiltImage:
    """The builder (training) image: the lock with the builder group (torch CPU build)."""
    require_podman()
    with cache_lock():
        base = base_image or ensure_base_image(log=log)
        wheelhouse = ensure_wheelhouse("builder", log=log)
        return _build(
            dockerfile="models/builder/Dockerfile",
            ref=ref or f"{BUILDER_IMAGE}:{project_version()}",
            wheelhouse=wheelhouse,
            base_image=base,
            patterns=BUILDER_INPUTS,
            force=force,
            log=log,
        )
