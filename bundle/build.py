"""``bundle build``: one signed archive with everything an air-gapped site installs.

Layout of ``minivess-<version>-r<release>.bundle.tar`` (an uncompressed tar: the image
layers are compressed already; members in this order, owner root, times from
``SOURCE_DATE_EPOCH``):

    manifest.json                              what the release is + every file's size, SHA-256
    manifest.json.sigstore.json                Ed25519 signature (Sigstore bundle v0.3)
    [manifest.json.keyless.sigstore.json]      keyless Sigstore signature (CI, optional)
    airgap/deploy.sh, bundlecheck.py, ...      the site installer (standard library only)
    compliance/...                             the rendered IEC 62304 documents
    grafana/minivess.json                      the Grafana dashboard (for a manual import)
    helm/minivess-<chart version>.tgz          the packaged Helm chart
    images/minivess-appliance-<version>-<variant>.oci.tar   podman save --format oci-archive
    models/minivess-vessel-ensemble/...        the ONNX ensemble, its manifest and model card
    sbom/python-environment.cdx.json           CycloneDX 1.6, locked pins with hashes
    sbom/appliance-image.cdx.json              CycloneDX 1.6 of the image (Python + Debian)
    smoke/study/*.dcm                          a synthetic CT angiography study (health check)

Release number: ``--release N``, else ``git rev-list --count --first-parent HEAD`` (the
number of commits on the release branch: increases with every commit there; build
releases from one branch, in CI). Sites refuse a bundle whose number is not above the
installed one.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bundle import helm, sbom
from bundle import image as image_module
from bundle.archive import write_tar
from bundle.manifest import (
    AIRGAP_DIR,
    CHART_DIR,
    COMPLIANCE_DIR,
    DASHBOARD,
    IMAGE_SBOM,
    IMAGES_DIR,
    KEYLESS_SIGNATURE,
    MANIFEST,
    MODELS_DIR,
    PYTHON_SBOM,
    SIGNATURE,
    SMOKE_DIR,
    ChartInfo,
    HealthChecks,
    ImageInfo,
    ModelsInfo,
    ReleaseManifest,
    file_entry,
)
from bundle.signing import KeylessMode, keyless_sign, load_private_key, sign_manifest
from containers import provenance
from containers.commands import Log
from containers.images import build_appliance_image
from models.digest import sha256_file

REPO = provenance.REPO_ROOT
DEFAULT_OUT = REPO / "var" / "bundle"
DEFAULT_CACHE = DEFAULT_OUT / "cache"
ENSEMBLE = REPO / "models" / "ensemble"
CHART = REPO / "helm" / "minivess"
DASHBOARD_SOURCE = CHART / "dashboards" / "minivess.json"  # the one source of the dashboard
AIRGAP_FILES = (
    "deploy.sh",
    "health.sh",
    "bundlecheck.py",
    "ed25519.py",
    "sitectl.py",
    "auditchain.py",
    "README.md",
)
SMOKE_SEED = 3
READY_URL = "http://127.0.0.1:3000/readyz"


class BundleError(RuntimeError):
    """The bundle cannot be built; the message says why."""


@dataclass(frozen=True)
class BuildOptions:
    signing_key: Path
    release: int | None = None
    image_ref: str | None = None  # None: build (or reuse) the CPU appliance image
    out_dir: Path = DEFAULT_OUT
    cache_dir: Path = DEFAULT_CACHE
    compliance_dir: Path | None = None  # None: render the documents now
    keyless: KeylessMode = "auto"


@dataclass(frozen=True)
class BuiltBundle:
    path: Path
    sha256: str
    size_bytes: int
    seconds: float
    manifest: ReleaseManifest
    keyless: str


def release_number(given: int | None) -> tuple[int, str]:
    if given is not None:
        if given < 1:
            raise BundleError("--release must be a positive integer")
        return given, "cli"
    count = provenance.git("rev-list", "--count", "--first-parent", "HEAD")
    if not count or not count.isdigit():
        raise BundleError("not a git checkout: give the release number with --release N")
    return int(count), "git rev-list --count --first-parent HEAD"


def _models(files: dict[str, Path], facts: dict[str, object]) -> ModelsInfo:
    """The shipped ensemble, checked against its manifest and the image's own copy."""
    manifest_path = ENSEMBLE / "manifest.json"
    ensemble = json.loads(manifest_path.read_text())
    folder = f"{MODELS_DIR}/{ensemble['name']}"
    shipped = {"manifest.json": sha256_file(manifest_path)}
    files[f"{folder}/manifest.json"] = manifest_path
    for member in ensemble["members"]:
        path = ENSEMBLE / member["file"]
        if not path.is_file() or sha256_file(path) != member["sha256"]:
            raise BundleError(f"{path} is missing or does not match models/ensemble/manifest.json")
        shipped[member["file"]] = member["sha256"]
        files[f"{folder}/{member['file']}"] = path
    # The model card (Markdown + figures) travels with the models it describes; the image
    # holds it too, so it is part of what must match.
    for card_file in sorted(ENSEMBLE.glob("model_card*")):
        files[f"{folder}/{card_file.name}"] = card_file
        shipped[card_file.name] = sha256_file(card_file)
    if facts["models"] != shipped:
        raise BundleError(
            "the image's models differ from models/ensemble: rebuild the image (make image)"
        )
    return ModelsInfo(
        path=folder,
        name=ensemble["name"],
        version=ensemble["version"],
        manifest_sha256=shipped["manifest.json"],
    )


def _chart(work: Path, files: dict[str, Path], app_version: str) -> ChartInfo:
    text = (CHART / "Chart.yaml").read_text()
    fields = dict(re.findall(r"^(name|version):\s*\"?([^\"\s]+)\"?\s*$", text, re.M))
    packaged = helm.package(CHART, destination=work / "chart", app_version=app_version)
    files[f"{CHART_DIR}/{packaged.name}"] = packaged
    return ChartInfo(
        path=f"{CHART_DIR}/{packaged.name}",
        name=fields["name"],
        version=fields["version"],
        app_version=app_version,
    )


def _compliance(work: Path, given: Path | None, files: dict[str, Path], log: Log) -> None:
    folder = given
    if folder is None:
        from compliance.gen.render import render

        folder = work / "compliance"
        log("compliance: rendering the documents ...")
        result = render(folder)
        if result.problems:
            raise BundleError("compliance checks failed: " + "; ".join(result.problems[:5]))
    if not folder.is_dir() or not any(folder.iterdir()):
        raise BundleError(f"no rendered compliance documents in {folder}")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        files[f"{COMPLIANCE_DIR}/{path.relative_to(folder).as_posix()}"] = path


def _smoke_study(work: Path, files: dict[str, Path]) -> None:
    from synthetic.case import Modality, generate_case
    from synthetic.dicom_series import write_series

    folder = work / "smoke"
    write_series(generate_case(SMOKE_SEED, Modality.CT), folder)
    for path in sorted(folder.iterdir()):
        files[f"{SMOKE_DIR}/{path.name}"] = path


def _sboms(
    image: image_module.ImageRef,
    facts: dict[str, object],
    build_time: str,
    options: BuildOptions,
    work: Path,
) -> tuple[Path, Path]:
    """Both SBOMs, validated; cached (validating the image's takes ~10 s) by their inputs."""
    lock_key = hashlib.sha256(
        (REPO / "uv.lock").read_bytes() + (REPO / "pyproject.toml").read_bytes()
    ).hexdigest()[:16]
    python_bom = options.cache_dir / f"python-environment.{lock_key}.cdx.json"
    if not python_bom.is_file():
        sbom.python_environment_sbom(work / python_bom.name, work)
        shutil.move(work / python_bom.name, python_bom)
    time_key = hashlib.sha256(build_time.encode()).hexdigest()[:8]
    image_bom = options.cache_dir / f"{image.id}.sbom-{time_key}.cdx.json"
    if not image_bom.is_file():
        document = sbom.image_sbom(image, facts, build_time)
        (work / image_bom.name).write_text(json.dumps(document, indent=2) + "\n")
        shutil.move(work / image_bom.name, image_bom)
    return python_bom, image_bom


def _stderr(message: str) -> None:
    print(f"bundle: {message}", file=sys.stderr, flush=True)


def build_bundle(options: BuildOptions, log: Log = _stderr) -> BuiltBundle:
    started = time.monotonic()
    key = load_private_key(options.signing_key)
    release, source = release_number(options.release)
    if source != "cli" and provenance.git_revision().endswith("-dirty"):
        log(f"warning: uncommitted changes: release {release} is the number of their commit")
    if options.image_ref:
        image = image_module.describe_image(options.image_ref)
    else:
        image = image_module.describe_image(build_appliance_image("cpu", log=log).ref)
    epoch = provenance.source_date_epoch()
    build_time = provenance.rfc3339(epoch)
    version = provenance.project_version()
    archive = image_module.oci_archive(image, options.cache_dir, log)
    facts = image_module.image_facts(image, options.cache_dir, log)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    options.cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=options.out_dir, prefix=".build-") as tmp:
        work = Path(tmp)
        files: dict[str, Path] = {}
        archive_name = f"{IMAGES_DIR}/minivess-appliance-{version}-{image.variant}.oci.tar"
        files[archive_name] = archive
        models = _models(files, facts)
        chart = _chart(work, files, version)
        files[DASHBOARD] = DASHBOARD_SOURCE
        files[PYTHON_SBOM], files[IMAGE_SBOM] = _sboms(image, facts, build_time, options, work)
        _compliance(work, options.compliance_dir, files, log)
        _smoke_study(work, files)
        for name in AIRGAP_FILES:
            files[f"{AIRGAP_DIR}/{name}"] = REPO / "airgap" / name
        log(f"manifest: hashing {len(files)} files ...")
        manifest = ReleaseManifest(
            version=version,
            release=release,
            release_number_source=source,
            git_commit=provenance.git_revision(),
            build_time=build_time,
            source_date_epoch=epoch,
            image=ImageInfo(
                ref=image.ref,
                id=image.id,
                archive=archive_name,
                variant=image.variant,
                revision=image.revision,
                created=image.created,
            ),
            models=models,
            chart=chart,
            sboms=[PYTHON_SBOM, IMAGE_SBOM],
            compliance=COMPLIANCE_DIR,
            health=HealthChecks(ready_url=READY_URL if facts["http_sidecar"] else None),
            files=[file_entry(name, path) for name, path in sorted(files.items())],
        )
        manifest_bytes = manifest.to_bytes()
        signature = json.dumps(sign_manifest(manifest_bytes, key), indent=2) + "\n"
        keyless_json, keyless_message = keyless_sign(manifest_bytes, options.keyless)
        log(keyless_message)
        members: list[tuple[str, Path | bytes]] = [
            (MANIFEST, manifest_bytes),
            (SIGNATURE, signature.encode()),
        ]
        if keyless_json is not None:
            members.append((KEYLESS_SIGNATURE, keyless_json.encode()))
        members += sorted(files.items())
        target = options.out_dir / f"minivess-{version}-r{release}.bundle.tar"
        log(f"writing {target} ...")
        digest = write_tar(target, members, epoch)
    (target.with_name(target.name + ".sha256")).write_text(f"{digest}  {target.name}\n")
    return BuiltBundle(
        path=target,
        sha256=digest,
        size_bytes=target.stat().st_size,
        seconds=time.monotonic() - started,
        manifest=manifest,
        keyless=keyless_message,
    )


def remove_bundle(path: Path) -> None:
    """Delete a bundle and its checksum file (tests)."""
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".sha256").unlink(missing_ok=True)
