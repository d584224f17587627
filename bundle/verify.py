"""``bundle verify``: check a bundle offline against a pinned public key; say what was checked.

Reads the archive without unpacking it. Checks, stopping at the first failure:
the tar (regular files only, safe names, none twice); the Ed25519 signature of
``manifest.json`` (``cryptography``) in its Sigstore bundle, by the pinned key; the
manifest (pydantic schema); exactly the listed files, no extra and none missing; each
file's size and SHA-256; the image archive holds the image id of the manifest; the SBOMs
are valid CycloneDX 1.6; the release number (above ``--installed-release`` when given).
With ``--keyless-identity``/``--keyless-issuer`` a keyless Sigstore signature is
verified too, offline, against sigstore-python's bundled trusted root.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from airgap.bundlecheck import Refused, safe_members
from bundle import sbom
from bundle.manifest import KEYLESS_SIGNATURE, MANIFEST, SIGNATURE, ReleaseManifest
from bundle.signing import SigningError, load_public_key, verify_key_signature, verify_keyless
from models.digest import sha256_stream


class VerificationError(RuntimeError):
    """The bundle failed a check; the message names the file or the check."""


@dataclass
class Verification:
    bundle: Path
    checked: list[str] = field(default_factory=list)
    manifest: ReleaseManifest | None = None

    def ok(self, line: str) -> None:
        self.checked.append(line)


def _read(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    assert handle is not None
    return handle.read()


def _oci_config_digest(handle: IO[bytes]) -> str:
    """The config digest (= podman's image id) of the single image in an OCI archive."""
    with tarfile.open(fileobj=handle, mode="r:") as oci:
        index = json.loads(_read(oci, oci.getmember("index.json")))
        (descriptor,) = index["manifests"]
        manifest_blob = "blobs/" + descriptor["digest"].replace(":", "/")
        manifest = json.loads(_read(oci, oci.getmember(manifest_blob)))
        return str(manifest["config"]["digest"]).removeprefix("sha256:")


def verify_bundle(
    bundle: Path,
    public_key_path: Path,
    *,
    installed_release: int | None = None,
    keyless_identity: str | None = None,
    keyless_issuer: str | None = None,
) -> Verification:
    result = Verification(bundle)
    public_key = load_public_key(public_key_path)
    try:
        archive = tarfile.open(bundle, "r:")  # noqa: SIM115 (closed by the with below)
    except (OSError, tarfile.TarError) as error:
        raise VerificationError(f"not a readable uncompressed tar: {error}") from None
    with archive:
        try:
            members = safe_members(archive)
        except Refused as problem:
            raise VerificationError(str(problem)) from None
        for required in (MANIFEST, SIGNATURE):
            if required not in members:
                raise VerificationError(f"the bundle has no {required}")
        manifest_bytes = _read(archive, members[MANIFEST])
        try:
            hint = verify_key_signature(
                _read(archive, members[SIGNATURE]), manifest_bytes, public_key
            )
        except SigningError as error:
            raise VerificationError(f"signature: {error}") from None
        result.ok(f"signature: Ed25519 by the pinned key {hint[:16]}… (Sigstore bundle v0.3)")
        try:
            manifest = ReleaseManifest.model_validate_json(manifest_bytes)
        except ValidationError as error:
            raise VerificationError(f"manifest.json: {error}") from None
        result.manifest = manifest
        result.ok(
            f"manifest: {manifest.product} {manifest.version}, commit {manifest.git_commit}, "
            f"built {manifest.build_time}"
        )
        listed = {entry.path: entry for entry in manifest.files}
        extra = sorted(set(members) - set(listed) - {MANIFEST, SIGNATURE, KEYLESS_SIGNATURE})
        missing = sorted(set(listed) - set(members))
        if extra:
            raise VerificationError(f"files not in the signed manifest: {', '.join(extra[:5])}")
        if missing:
            raise VerificationError(f"files of the manifest missing: {', '.join(missing[:5])}")
        result.ok(
            f"files: exactly the {len(listed)} files of the manifest (no extra, none missing)"
        )
        total = 0
        for path, entry in sorted(listed.items(), key=lambda item: item[1].size):
            handle = archive.extractfile(members[path])
            assert handle is not None
            sha, size = sha256_stream(handle)
            if size != entry.size:
                raise VerificationError(f"{path}: {size} bytes, the manifest says {entry.size}")
            if sha != entry.sha256:
                raise VerificationError(f"{path}: SHA-256 differs from the manifest (altered)")
            total += size
        result.ok(f"sizes and SHA-256 of {len(listed)} files ({total / 1e6:.1f} MB)")
        image_handle = archive.extractfile(members[manifest.image.archive])
        assert image_handle is not None
        found = _oci_config_digest(image_handle)
        if found != manifest.image.id:
            raise VerificationError(
                f"{manifest.image.archive} holds image {found[:12]}, "
                f"the manifest says {manifest.image.id[:12]}"
            )
        result.ok(
            f"image: {manifest.image.archive} holds image {found[:12]} ({manifest.image.ref})"
        )
        for path in manifest.sboms:
            sbom.validate(_read(archive, members[path]).decode(), path)
        result.ok(f"SBOMs: {', '.join(manifest.sboms)} are valid CycloneDX 1.6")
        if installed_release is not None and manifest.release <= installed_release:
            raise VerificationError(
                f"release {manifest.release} is not above the installed release {installed_release}"
            )
        above = f", above {installed_release}" if installed_release is not None else ""
        result.ok(f"release number: {manifest.release} ({manifest.release_number_source}{above})")
        if KEYLESS_SIGNATURE in members:
            if keyless_identity and keyless_issuer:
                signed = _read(archive, members[KEYLESS_SIGNATURE])
                try:
                    result.ok(
                        verify_keyless(signed, manifest_bytes, keyless_identity, keyless_issuer)
                    )
                except SigningError as error:
                    raise VerificationError(str(error)) from None
            else:
                result.ok("keyless signature: present, not checked (--keyless-identity/-issuer)")
        elif keyless_identity:
            raise VerificationError("no keyless Sigstore signature in the bundle")
    return result
