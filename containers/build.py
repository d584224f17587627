"""Build the appliance (MAP) and builder images with podman, offline, with caching.

    python -m containers.build appliance [--variant cpu|gpu]   the appliance image (make image)
    python -m containers.build builder                         the training image
    python -m containers.build base | wheelhouse               just one of the inputs

Three steps, each cached under ``var/containers/`` so that a second build (and every
test session after the first) reuses them:

1. the Debian base image ``localhost/minivess-base:bookworm``, made with ``mmdebstrap``
   from the Debian mirror named in this machine's apt sources (no registry needed),
   kept as a tar keyed by its recipe and imported into podman;
2. a wheelhouse made from ``uv.lock``: ``uv export`` of the runtime dependencies (no
   dependency groups; the builder image adds the ``builder`` group), ``pip download``
   of exactly those pins, keyed by the SHA-256 of the lock;
3. ``podman build --network none`` with the wheelhouse as the extra build context
   ``wheelhouse``; the image carries the digest of all its inputs in a label, and an
   image whose label matches is reused without building.

Podman reads ``containers/containers.conf`` (runc, cgroupfs, file events, explicit
ulimits) unless ``CONTAINERS_CONF`` is set. Sites build on their own approved base with
``--base-image`` (then no mmdebstrap).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from settings.base import load
from settings.site import ImageBuildSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
CONTAINERS_CONF = REPO_ROOT / "containers" / "containers.conf"
# scripts/bootstrap.sh installs the pinned uv into a venv of its own here.
BOOTSTRAP_UV = REPO_ROOT / ".tools" / "uv" / "bin" / "uv"
CACHE_DIR = REPO_ROOT / "var" / "containers"

SUITE = "bookworm"  # Debian 12: python3 is 3.11, as the lock requires
BASE_IMAGE = f"localhost/minivess-base:{SUITE}"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
MMDEBSTRAP_OPTIONS = (
    "--variant=apt",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
)
APPLIANCE_IMAGE = "localhost/minivess-appliance"
BUILDER_IMAGE = "localhost/minivess-builder"
VARIANTS = ("cpu", "gpu")
# The target of the wheelhouse: the base image's interpreter and C library (bookworm:
# CPython 3.11, glibc 2.36), whatever the build machine runs. pip does not widen a
# --platform to older manylinux tags itself, so every compatible tag is listed.
_GLIBC_MINOR = 36
_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(_GLIBC_MINOR, 4, -1)]
_PLATFORMS += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
WHEEL_TARGET = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
WHEEL_TARGET += [arg for platform in _PLATFORMS for arg in ("--platform", platform)]

# Labels the build writes so that caches can be recognised.
BASE_KEY_LABEL = "io.minivess.base.key"
INPUTS_LABEL = "io.minivess.build.inputs"
# Bump to invalidate every cache when the recipe here changes.
RECIPE_VERSION = "1"

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
    "settings/__init__.py",
    "settings/base.py",
    "settings/site.py",
    "compliance/__init__.py",
    "compliance/audit",
    "airgap/__init__.py",
    "airgap/auditchain.py",
    "models",
)

Log = Callable[[str], None]


class ContainerBuildError(RuntimeError):
    """A build step failed; the message says which and shows the end of its log."""


def _stderr(message: str) -> None:
    print(f"containers.build: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ podman


def podman_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for podman: ``CONTAINERS_CONF`` -> the repository's config unless set."""
    env = dict(os.environ if base is None else base)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def require_podman() -> str:
    found = shutil.which("podman")
    if found is None:
        raise ContainerBuildError(
            "podman not found: install podman, buildah, runc (scripts/bootstrap.sh peers)"
        )
    return found


def podman(
    *args: str, check: bool = True, timeout: float | None = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS`` with the repository's config; output captured as text."""
    done = subprocess.run(
        [require_podman(), *args],
        capture_output=True,
        text=True,
        env=podman_env(),
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise ContainerBuildError(
            f"podman {' '.join(args[:3])} ... failed (exit {done.returncode}):\n"
            f"{(done.stdout + done.stderr)[-4000:]}"
        )
    return done


def image_labels(ref: str) -> dict[str, str] | None:
    """The labels of a local image, or None when there is no such image."""
    done = podman("image", "inspect", "--format", "{{json .Labels}}", ref, check=False)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip() or "null") or {}


def image_id(ref: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def image_size(ref: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())


def _run_logged(cmd: Sequence[str], log_path: Path, what: str, env: dict[str, str]) -> None:
    """Run ``cmd`` with its output in ``log_path``; on failure raise with the log's tail."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        status = subprocess.run(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env, check=False
        ).returncode
    if status != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise ContainerBuildError(f"{what} failed (exit {status}); log {log_path}:\n{tail}")


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


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


# ---------------------------------------------------------------------- Debian mirror


@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str


def _sources_list_entries(text: str) -> Iterator[AptSource]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = re.sub(r"\[[^\]]*\]", " ", line).split()  # drop [arch=... signed-by=...]
        if len(words) >= 3:
            yield AptSource(words[1].rstrip("/"), words[2])


def _deb822_entries(text: str) -> Iterator[AptSource]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for raw in stanza.splitlines():
            if raw.lstrip().startswith("#") or ":" not in raw or raw[:1].isspace():
                continue
            key, value = raw.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                yield AptSource(uri.rstrip("/"), suite)


def apt_sources(root: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every enabled ``deb`` source of this machine (sources.list and sources.list.d)."""
    entries: list[AptSource] = []
    files = [root / "sources.list"]
    if (root / "sources.list.d").is_dir():
        files += sorted((root / "sources.list.d").iterdir())
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            entries += _deb822_entries(text)
        elif path.suffix == ".list" or path.name == "sources.list":
            entries += _sources_list_entries(text)
    return entries


def debian_sources(suite: str = SUITE, root: Path = Path("/etc/apt")) -> list[str]:
    """The apt lines for mmdebstrap: ``suite``, its updates and security, from the mirrors
    this machine uses. ``MINIVESS_DEBIAN_MIRROR`` / ``MINIVESS_DEBIAN_SECURITY_MIRROR``
    override them (e.g. on a build host that is not Debian)."""
    entries = [e for e in apt_sources(root) if e.uri.startswith(("http://", "https://", "file:"))]
    mirrors = load(ImageBuildSettings)

    def kind(entry: AptSource) -> str:
        name = entry.suite.rsplit("/", 1)[-1]
        for tail in ("-security", "-updates", "-backports", "-proposed-updates"):
            if name.endswith(tail):
                return tail
        return ""

    main = mirrors.debian_mirror or next(
        (e.uri for e in entries if e.suite == suite),
        next((e.uri for e in entries if kind(e) == "" and "/debian" in e.uri), None),
    )
    if not main:
        raise ContainerBuildError(
            "no Debian mirror in /etc/apt/sources.list(.d): set MINIVESS_DEBIAN_MIRROR "
            "(and MINIVESS_DEBIAN_SECURITY_MIRROR) to the mirror URLs"
        )
    security = mirrors.debian_security_mirror or next(
        (e.uri for e in entries if kind(e) == "-security"), main + "-security"
    )
    return [
        f"deb {main} {suite} main",
        f"deb {main} {suite}-updates main",
        f"deb {security} {suite}-security main",
    ]


# ---------------------------------------------------------------------------- base image


def base_key(packages: Iterable[str] = BASE_PACKAGES) -> str:
    return _digest(RECIPE_VERSION, SUITE, *sorted(packages), *MMDEBSTRAP_OPTIONS)[:16]


def ensure_base_image(*, refresh: bool = False, log: Log = _stderr) -> str:
    """``localhost/minivess-base:bookworm`` made by mmdebstrap, from cache when possible."""
    key = base_key()
    labels = image_labels(BASE_IMAGE)
    if not refresh and labels is not None and labels.get(BASE_KEY_LABEL) == key:
        return BASE_IMAGE
    tar = CACHE_DIR / "base" / f"{SUITE}-{key}.tar"
    if refresh or not tar.is_file():
        mmdebstrap = shutil.which("mmdebstrap")
        if mmdebstrap is None:
            raise ContainerBuildError(
                "mmdebstrap not found (scripts/bootstrap.sh peers installs it)"
            )
        for old in tar.parent.glob("*.tar*"):
            old.unlink()
        tar.parent.mkdir(parents=True, exist_ok=True)
        partial = tar.with_suffix(".tar.partial")
        sources = debian_sources()
        log(f"base: mmdebstrap {SUITE} from {sources[0].split()[1]} ...")
        started = time.monotonic()
        cmd = [
            mmdebstrap,
            *MMDEBSTRAP_OPTIONS,
            "--include=" + ",".join(BASE_PACKAGES),
            "--format=tar",
            SUITE,
            str(partial),
            *sources,
        ]
        _run_logged(cmd, CACHE_DIR / "logs" / "mmdebstrap.log", "mmdebstrap", dict(os.environ))
        partial.rename(tar)
        log(f"base: {tar.stat().st_size / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
    podman(
        "import",
        "--change",
        'CMD ["/bin/bash"]',
        "--change",
        f"LABEL {BASE_KEY_LABEL}={key}",
        "--message",
        f"mmdebstrap {SUITE} {key}",
        str(tar),
        BASE_IMAGE,
    )
    log(f"base: imported {BASE_IMAGE}")
    return BASE_IMAGE


# ---------------------------------------------------------------------------- wheelhouse


@dataclass(frozen=True)
class Wheelhouse:
    """A wheelhouse folder with the requirement file of one variant."""

    path: Path
    variant: str
    digest: str  # SHA-256 of requirements-<variant>.txt: what the image's venv is made of

    @property
    def requirements(self) -> Path:
        return self.path / f"requirements-{self.variant}.txt"


def wheelhouse_dir() -> Path:
    """The cache folder, keyed by the pins of the largest set (runtime + builder group):
    changes to other dependency groups of the lock do not invalidate it."""
    pins = export_requirements(("builder",))
    return CACHE_DIR / "wheelhouse" / _digest(RECIPE_VERSION, *pins)[:16]


def find_uv() -> str | None:
    """The uv that scripts/bootstrap.sh installed (``.tools/uv``), else the one on PATH."""
    return str(BOOTSTRAP_UV) if BOOTSTRAP_UV.is_file() else shutil.which("uv")


def _uv() -> str:
    found = find_uv()
    if found is None:
        raise ContainerBuildError("uv not found (scripts/bootstrap.sh python installs it)")
    return found


def export_requirements(groups: Sequence[str] = ()) -> list[str]:
    """The lock's pins (no hashes, no project) for the default dependencies + ``groups``."""
    cmd = [
        _uv(),
        "export",
        "--frozen",
        "--no-default-groups",
        "--no-hashes",
        "--no-emit-project",
        "--no-header",
        "--no-annotate",
    ]
    for group in groups:
        cmd += ["--group", group]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ContainerBuildError(f"uv export failed: {done.stderr.strip()}")
    return [line for line in done.stdout.splitlines() if line.strip() and line[0] != "#"]


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match[1]).lower() if match else ""


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
            version = re.search(r"==\s*([^\s;]+)", line)
            if version is None:
                raise ContainerBuildError(f"the lock does not pin onnxruntime-openvino: {line}")
            out.append(f"onnxruntime-gpu=={version[1]}")
        else:
            out.append(line)
    for wheel in sorted(wheelhouse.glob("tensorrt*.whl")):
        wheel_name, wheel_version = wheel.name.split("-")[:2]
        out.append(f"{wheel_name.replace('_', '-')}=={wheel_version}")
    return out


def ensure_wheelhouse(variant: str = "cpu", *, log: Log = _stderr) -> Wheelhouse:
    """The wheelhouse (cached per set of pins) with ``requirements-<variant>.txt``.

    ``variant``: ``cpu`` or ``gpu`` (appliance), ``builder`` (training image).
    """
    directory = wheelhouse_dir()
    locked = export_requirements(("builder",) if variant == "builder" else ())
    lines = requirements_for(variant, locked, directory)
    text = (
        f"# {variant}: pins from uv.lock (uv export), "
        "written by containers/build.py\n" + "\n".join(lines) + "\n"
    )
    wheelhouse = Wheelhouse(directory, variant, _digest(text))
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
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--only-binary=:all:",
        *WHEEL_TARGET,
        "--disable-pip-version-check",
        "--progress-bar=off",
        "--dest",
        str(directory),
        "-r",
        str(wheelhouse.requirements),
    ]
    _run_logged(
        cmd, CACHE_DIR / "logs" / f"wheelhouse-{variant}.log", "pip download", dict(os.environ)
    )
    size = sum(p.stat().st_size for p in directory.glob("*.whl"))
    log(f"wheelhouse: {size / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
    marker.write_text(text)
    return wheelhouse


# -------------------------------------------------------------------------------- images


def project_version() -> str:
    return str(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"])


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_revision() -> str:
    """The commit, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return "unknown"
    return commit + ("-dirty" if _git("status", "--porcelain", "--untracked-files=no") else "")


def source_date_epoch() -> int:
    """``SOURCE_DATE_EPOCH``, else the time of the last commit (reproducible builds)."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    return int(_git("log", "-1", "--format=%ct") or 0)


def rfc3339(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    return _digest(*parts)


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
    digest = inputs_digest(
        patterns, variant, version, revision, str(epoch), base_image, base_id, wheelhouse.digest
    )
    labels = image_labels(ref)
    if not force and labels is not None and labels.get(INPUTS_LABEL) == digest:
        log(f"image: {ref} is current (inputs {digest[:12]})")
        seconds = time.monotonic() - started
        return BuiltImage(
            ref,
            image_id(ref),
            digest,
            False,
            seconds,
            image_size(ref),
            version,
            revision,
            rfc3339(epoch),
        )
    log(f"image: podman build {ref} ({dockerfile}, {variant}) ...")
    cmd = [
        require_podman(),
        "build",
        "--network",
        "none",
        "--file",
        dockerfile,
        "--tag",
        ref,
        "--build-context",
        f"wheelhouse={wheelhouse.path}",
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        "--build-arg",
        f"VARIANT={variant}",
        "--build-arg",
        f"VERSION={version}",
        "--build-arg",
        f"REVISION={revision}",
        "--build-arg",
        f"CREATED={rfc3339(epoch)}",
        "--build-arg",
        f"SOURCE_DATE_EPOCH={epoch}",
        "--build-arg",
        f"WHEELHOUSE_DIGEST={wheelhouse.digest}",
        "--label",
        f"{INPUTS_LABEL}={digest}",
        str(REPO_ROOT),
    ]
    name = Path(dockerfile).parent.name or "appliance"
    _run_logged(
        cmd, CACHE_DIR / "logs" / f"build-{name}-{variant}.log", "podman build", podman_env()
    )
    seconds = time.monotonic() - started
    log(f"image: {ref} built in {seconds:.0f} s")
    return BuiltImage(
        ref,
        image_id(ref),
        digest,
        True,
        seconds,
        image_size(ref),
        version,
        revision,
        rfc3339(epoch),
    )


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
    log: Log = _stderr,
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
    log: Log = _stderr,
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m containers.build",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", choices=["appliance", "builder", "base", "wheelhouse"])
    parser.add_argument("--variant", choices=VARIANTS, default="cpu", help="appliance variant")
    parser.add_argument("--tag", help="image reference (default localhost/minivess-...:VERSION)")
    parser.add_argument("--base-image", help="build on this image instead of the mmdebstrap base")
    parser.add_argument("--force", action="store_true", help="build even when current")
    parser.add_argument("--refresh-base", action="store_true", help="re-run mmdebstrap")
    args = parser.parse_args(argv)
    try:
        if args.target == "base":
            with cache_lock():
                print(ensure_base_image(refresh=args.refresh_base))
        elif args.target == "wheelhouse":
            with cache_lock():
                print(ensure_wheelhouse(args.variant).path)
        elif args.target == "builder":
            image = build_builder_image(ref=args.tag, base_image=args.base_image, force=args.force)
            print(json.dumps(asdict(image), indent=2))
        else:
            image = build_appliance_image(
                args.variant,
                ref=args.tag,
                base_image=args.base_image,
                force=args.force,
                refresh_base=args.refresh_base,
            )
            print(json.dumps(asdict(image), indent=2))
    except ContainerBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
