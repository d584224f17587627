"""The wheelhouse of an image: the pins of ``uv.lock``, downloaded as wheels.

``uv export`` of the runtime dependencies (no dependency groups; the builder image adds
the ``builder`` group), then ``pip download`` of exactly those pins for the base image's
interpreter, cached under ``var/containers/wheelhouse`` keyed by the pins.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from containers.cache import CACHE_DIR, RECIPE_VERSION, digest
from containers.commands import ContainerBuildError, Log, log_to_stderr, run_logged
from containers.provenance import REPO_ROOT

# scripts/bootstrap.sh installs the pinned uv into a venv of its own here.
BOOTSTRAP_UV = REPO_ROOT / ".tools" / "uv" / "bin" / "uv"
# The target of the wheelhouse: the base image's interpreter and C library (bookworm:
# CPython 3.11, glibc 2.36), whatever the build machine runs. pip does not widen a
# --platform to older manylinux tags itself, so every compatible tag is listed.
_GLIBC_MINOR = 36
_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(_GLIBC_MINOR, 4, -1)]
_PLATFORMS += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
WHEEL_TARGET = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
WHEEL_TARGET += [arg for platform in _PLATFORMS for arg in ("--platform", platform)]


@dataclass(frozen=True)
class Wheelhouse:
    """A wheelhouse folder with the requirement file of one variant."""

    path: Path
    variant: str
    digest: str  # SHA-256 of requirements-<variant>.txt: what the image's venv is made of

    @property
    def requirements(self) -> Path:
        return self.path / f"requirements-{self.variant}.txt"


def find_uv() -> str | None:
    """The uv that scripts/bootstrap.sh installed (``.tools/uv``), else the one on PATH."""
    return str(BOOTSTRAP_UV) if BOOTSTRAP_UV.is_file() else shutil.which("uv")


def export_requirements(groups: Sequence[str] = ()) -> list[str]:
    """The lock's pins (no hashes, no project) for the default dependencies + ``groups``."""
    uv = find_uv()
    if uv is None:
        raise ContainerBuildError("uv not found (scripts/bootstrap.sh python installs it)")
    cmd = [uv, "export", "--frozen", "--no-default-groups", "--no-hashes", "--no-emit-project"]
    cmd += ["--no-header", "--no-annotate"]
    for group in groups:
        cmd += ["--group", group]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ContainerBuildError(f"uv export failed: {done.stderr.strip()}")
    return [line for line in done.stdout.splitlines() if line.strip() and line[0] != "#"]


def requirement_name(requirement: str) -> str:
    """The normalised project name (PEP 503) of a requirement line; "" when it is none."""
    try:
        return canonicalize_name(Requirement(requirement).name)
    except InvalidRequirement:
        return ""


def _pinned_version(requirement: str) -> str:
    """The version of an ``==`` pin; ContainerBuildError for anything else."""
    try:
        pins = [s for s in Requirement(requirement).specifier if s.operator == "=="]
    except InvalidRequirement:
        pins = []
    if len(pins) != 1:
        raise ContainerBuildError(
            f"the lock does not pin {requirement_name(requirement)}: {requirement}"
        )
    return pins[0].version


def requirements_for(variant: str, locked: Sequence[str], wheelhouse: Path) -> list[str]:
    """The requirement lines of one image variant.

    ``cpu``: the lock as is (ONNX Runtime with the OpenVINO provider). ``gpu``: the same
    with onnxruntime-openvino swapped for onnxruntime-gpu of the same ONNX Runtime
    version, plus every TensorRT wheel a site has put into the wheelhouse (TensorRT's
    PyPI packages download from NVIDIA's index, which build machines cannot reach).
    ``builder``: the lock with the builder group (torch CPU build, MONAI, onnx).
    """
    lines = list(locked)
    if variant != "gpu":
        return lines
    out = []
    for line in lines:
        if requirement_name(line) == "onnxruntime-openvino":
            out.append(f"onnxruntime-gpu=={_pinned_version(line)}")
        else:
            out.append(line)
    for wheel in sorted(wheelhouse.glob("tensorrt*.whl")):
        try:
            wheel_name, wheel_version, _, _ = parse_wheel_filename(wheel.name)
        except InvalidWheelFilename as error:
            raise ContainerBuildError(f"not a wheel in the wheelhouse: {error}") from None
        out.append(f"{wheel_name}=={wheel_version}")
    return out


def wheelhouse_dir() -> Path:
    """The cache folder, keyed by the pins of the largest set (runtime + builder group):
    changes to other dependency groups of the lock do not invalidate it."""
    pins = export_requirements(("builder",))
    return CACHE_DIR / "wheelhouse" / digest(RECIPE_VERSION, *pins)[:16]


def ensure_wheelhouse(variant: str = "cpu", *, log: Log = log_to_stderr) -> Wheelhouse:
    """The wheelhouse (cached per set of pins) with ``requirements-<variant>.txt``.

    ``variant``: ``cpu`` or ``gpu`` (appliance), ``builder`` (training image).
    """
    directory = wheelhouse_dir()
    locked = export_requirements(("builder",) if variant == "builder" else ())
    lines = requirements_for(variant, locked, directory)
    # The header names the module that wrote it before the split of containers/build.py:
    # the text is hashed into every image's inputs, so a new name would rebuild them all.
    text = (
        f"# {variant}: pins from uv.lock (uv export), "
        "written by containers/build.py\n" + "\n".join(lines) + "\n"
    )
    wheelhouse = Wheelhouse(directory, variant, digest(text))
    marker = directory / f".complete-{variant}"
    if marker.is_file() and marker.read_text() == text and wheelhouse.requirements.is_file():
        return wheelhouse
    for old in directory.parent.glob("*") if directory.parent.is_dir() else ():
        if old != directory:
            shutil.rmtree(old, ignore_errors=True)  # wheelhouses of older locks
    directory.mkdir(parents=True, exist_ok=True)
    wheelhouse.requirements.write_text(text)
    log(f"wheelhouse: pip download {len(lines)} requirements ({variant}) into {directory}")
    started = time.monotonic()
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", *WHEEL_TARGET]
    cmd += ["--disable-pip-version-check", "--progress-bar=off", "--dest", str(directory)]
    cmd += ["-r", str(wheelhouse.requirements)]
    run_logged(
        cmd, CACHE_DIR / "logs" / f"wheelhouse-{variant}.log", "pip download", dict(os.environ)
    )
    size = sum(p.stat().st_size for p in directory.glob("*.whl"))
    log(f"wheelhouse: {size / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
    marker.write_text(text)
    return wheelhouse
