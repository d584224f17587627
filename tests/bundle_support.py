"""What the bundle tests share (tests/test_bundle.py, tests/test_bundle_signing.py,
tests/test_airgap_site_tools.py): small hand-made signed bundles, a release key pair, the
site verifier run as deploy.sh runs it, and the check that both verifiers refuse a bundle.
A test module imports ``key_fixture`` to get the ``key`` fixture.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from airgap import bundlecheck
from bundle import signing
from bundle.archive import write_tar
from bundle.manifest import (
    MANIFEST,
    SIGNATURE,
    ChartInfo,
    FileEntry,
    HealthChecks,
    ImageInfo,
    ModelsInfo,
    ReleaseManifest,
)
from bundle.verify import VerificationError, verify_bundle

REPO = Path(__file__).resolve().parents[1]
SITE_PYTHON = [sys.executable, "-E", "-s", "-S"]  # what deploy.sh runs: stdlib only


def _oci_archive(config: bytes) -> tuple[bytes, str]:
    """A minimal OCI image archive (index -> manifest -> config) and its image id."""
    image_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": f"sha256:{image_id}"}})
    manifest_digest = hashlib.sha256(manifest.encode()).hexdigest()
    index = json.dumps({"manifests": [{"digest": f"sha256:{manifest_digest}"}]})
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in (
            ("index.json", index.encode()),
            (f"blobs/sha256/{manifest_digest}", manifest.encode()),
            (f"blobs/sha256/{image_id}", config),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue(), image_id


SBOM = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1}).encode()


def make_bundle(
    folder: Path,
    key: Ed25519PrivateKey,
    *,
    release: int = 7,
    extra_members: list[tuple[str, bytes]] | None = None,
) -> Path:
    image, image_id = _oci_archive(b'{"config": {"Entrypoint": ["minivess"]}}')
    files = {
        "images/app.oci.tar": image,
        "models/ens/manifest.json": b'{"name": "ens"}',
        "models/ens/member.onnx": bytes(range(256)) * 40,
        "sbom/python-environment.cdx.json": SBOM,
        "airgap/deploy.sh": b"#!/bin/bash\n",
    }
    for name, data in files.items():
        (folder / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "src" / name).write_bytes(data)
    manifest = ReleaseManifest(
        version="0.1.0",
        release=release,
        release_number_source="cli",
        git_commit="0" * 40,
        build_time="2026-01-01T00:00:00Z",
        source_date_epoch=1767225600,
        image=ImageInfo(
            ref="localhost/minivess-appliance:0.1.0",
            id=image_id,
            archive="images/app.oci.tar",
            revision="0" * 40,
            created="2026-01-01T00:00:00Z",
        ),
        models=ModelsInfo(path="models/ens", name="ens", version="1", manifest_sha256="a" * 64),
        chart=ChartInfo(path="helm/x.tgz", name="minivess", version="0.1.0", app_version="0.1.0"),
        sboms=["sbom/python-environment.cdx.json"],
        compliance="compliance",
        health=HealthChecks(),
        files=[
            FileEntry(path=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())
            for name, data in sorted(files.items())
        ],
    )
    manifest_bytes = manifest.to_bytes()
    signature = json.dumps(signing.sign_manifest(manifest_bytes, key)).encode()
    members: list[tuple[str, Path | bytes]] = [(MANIFEST, manifest_bytes), (SIGNATURE, signature)]
    members += [(name, folder / "src" / name) for name in sorted(files)]
    members += extra_members or []
    target = folder / f"r{release}.bundle.tar"
    write_tar(target, members, 1767225600)
    return target


@pytest.fixture(name="key")
def key_fixture(tmp_path: Path) -> tuple[Ed25519PrivateKey, Path]:
    private = Ed25519PrivateKey.generate()
    public = tmp_path / "release.pub"
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def site_check(bundle: Path, public: Path) -> subprocess.CompletedProcess[str]:
    """airgap/bundlecheck.py as deploy.sh runs it (no site-packages, no PYTHONPATH)."""
    return subprocess.run(
        [
            *SITE_PYTHON,
            str(REPO / "airgap/bundlecheck.py"),
            str(bundle),
            "--public-key",
            str(public),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )


def both_refuse(bundle: Path, public: Path, reason: str) -> None:
    site = site_check(bundle, public)
    assert site.returncode == bundlecheck.EXIT_REFUSED, site.stdout + site.stderr
    assert reason in site.stderr, site.stderr
    with pytest.raises(VerificationError, match=re.escape(reason)):
        verify_bundle(bundle, public)
