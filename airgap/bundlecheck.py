"""Verify a signed MinIVess release bundle offline, with the Python standard library only.

    python3 -E -s -S bundlecheck.py BUNDLE.tar --public-key KEY.pem [--extract-to DIR]
                                    [--report FILE]

What ``deploy.sh`` runs before it changes anything. In this order, stopping at the
first problem (exit 3, ``REFUSED: <problem>`` on stderr):

1. the archive: a plain (uncompressed) tar of regular files and folders only, with safe
   relative names, each name once;
2. the signature: ``manifest.json.sigstore.json`` is a Sigstore bundle (v0.3) whose
   public-key hint names the pinned key and whose ``messageSignature`` holds the
   SHA-256 of ``manifest.json`` and an Ed25519 signature of it by the pinned key
   (pure-Python RFC 8032 verification: ``ed25519.py``). Only then is the manifest read;
3. the manifest: its schema, and that the archive holds exactly the files it lists
   (no extra, no missing) with their signed sizes;
4. every file's SHA-256; with ``--extract-to`` the files are written there while they
   are hashed, so what is installed is the very bytes that were checked.

Exit 0 prints what was checked; ``--report`` writes it as JSON (for deploy.sh).
A keyless Sigstore signature, when the bundle has one, is reported but needs
``python -m bundle verify --keyless-identity ...`` (X.509 chains are beyond the stdlib).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import sys
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

try:
    from airgap import ed25519
except ImportError:  # run as a script next to ed25519.py (deploy.sh on a site)
    import ed25519  # type: ignore[no-redef]

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sigstore.json"
KEYLESS_SIGNATURE = "manifest.json.keyless.sigstore.json"
SIGSTORE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SCHEMA_VERSION = 1
PRODUCT = "minivess-appliance"
# DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE, AlgorithmIdentifier
# 1.3.101.112, BIT STRING of 32 bytes.
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_SAFE_PART = re.compile(r"^[A-Za-z0-9._+@=-]+$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
EXIT_REFUSED = 3


class Refused(Exception):  # noqa: N818 (reads as the verdict: raise Refused(...))
    """The bundle must not be installed; the message names the problem."""


# ---------------------------------------------------------------------------- keys


def load_public_key(path: Path) -> bytes:
    """The DER SubjectPublicKeyInfo of an Ed25519 public key in a PEM file."""
    try:
        text = path.read_text()
    except OSError as error:
        raise Refused(f"cannot read the pinned public key {path}: {error.strerror}") from None
    match = re.search(r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", text, re.S)
    if match is None:
        raise Refused(f"{path} is not a PEM public key (BEGIN PUBLIC KEY)")
    try:
        der = base64.b64decode("".join(match[1].split()), validate=True)
    except binascii.Error:
        raise Refused(f"{path}: the PEM body is not base64") from None
    if len(der) != 44 or not der.startswith(_ED25519_SPKI_PREFIX):
        raise Refused(f"{path} is not an Ed25519 public key")
    return der


def key_hint(spki_der: bytes) -> str:
    """The key id used as the Sigstore ``publicKey.hint``: SHA-256 (hex) of the DER SPKI."""
    return hashlib.sha256(spki_der).hexdigest()


# ----------------------------------------------------------------------- signature


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise Refused(f"signature bundle: {what} missing")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise Refused(f"signature bundle: {what} is not base64") from None


def check_signature(bundle_bytes: bytes, manifest_bytes: bytes, spki_der: bytes) -> str:
    """Check the Sigstore bundle against the manifest and the pinned key; the hint."""
    try:
        bundle = json.loads(bundle_bytes)
    except ValueError:
        raise Refused(f"{SIGNATURE} is not JSON") from None
    if not isinstance(bundle, dict) or bundle.get("mediaType") != SIGSTORE_MEDIA_TYPE:
        raise Refused(f"{SIGNATURE}: not a Sigstore bundle v0.3 ({SIGSTORE_MEDIA_TYPE})")
    material = bundle.get("verificationMaterial") or {}
    hint = (material.get("publicKey") or {}).get("hint")
    pinned = key_hint(spki_der)
    if hint != pinned:
        raise Refused(f"signed with another key (hint {hint!r}), not the pinned key {pinned}")
    message = bundle.get("messageSignature") or {}
    digest = message.get("messageDigest") or {}
    if digest.get("algorithm") != "SHA2_256":
        raise Refused(f"signature bundle: digest algorithm {digest.get('algorithm')!r}")
    if _b64(digest.get("digest"), "messageDigest") != hashlib.sha256(manifest_bytes).digest():
        raise Refused(f"{MANIFEST} does not match the signed digest (manifest altered)")
    signature = _b64(message.get("signature"), "signature")
    if not ed25519.verify(spki_der[len(_ED25519_SPKI_PREFIX) :], manifest_bytes, signature):
        raise Refused(f"the signature of {MANIFEST} does not verify with the pinned key")
    return pinned


# ------------------------------------------------------------------------ manifest


def _safe_name(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return (
        bool(parts)
        and not name.startswith("/")
        and "//" not in name
        and not name.endswith("/")
        and all(part not in (".", "..") and _SAFE_PART.match(part) for part in parts)
    )


def check_manifest(manifest: Any) -> dict[str, dict[str, Any]]:
    """The manifest's files by path, after checking the fields deploy.sh relies on."""
    if not isinstance(manifest, dict):
        raise Refused(f"{MANIFEST} is not a JSON object")
    if manifest.get("schema_version") != SCHEMA_VERSION or manifest.get("product") != PRODUCT:
        raise Refused(f"{MANIFEST}: not a {PRODUCT} manifest of schema {SCHEMA_VERSION}")
    release = manifest.get("release")
    if not isinstance(release, int) or isinstance(release, bool) or release < 1:
        raise Refused(f"{MANIFEST}: release must be a positive integer, not {release!r}")
    image = manifest.get("image") or {}
    if not isinstance(image.get("archive"), str) or not _HEX64.match(str(image.get("id"))):
        raise Refused(f"{MANIFEST}: image archive and id (64 hex digits) are required")
    files: dict[str, dict[str, Any]] = {}
    for entry in manifest.get("files") or []:
        path, size, sha = entry.get("path"), entry.get("size"), entry.get("sha256")
        if not isinstance(path, str) or not _safe_name(path) or path in files:
            raise Refused(f"{MANIFEST}: bad or repeated file path {path!r}")
        if not isinstance(size, int) or size < 0 or not _HEX64.match(str(sha)):
            raise Refused(f"{MANIFEST}: {path}: size and sha256 are required")
        files[path] = entry
    if not files or image["archive"] not in files:
        raise Refused(f"{MANIFEST}: lists no files, or not the image archive")
    return files


# ---------------------------------------------------------------------------- tar


def safe_members(archive: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    members: dict[str, tarfile.TarInfo] = {}
    for member in archive.getmembers():
        name = member.name
        if member.isdir() and _safe_name(name.rstrip("/")):
            continue
        if not member.isreg():
            raise Refused(f"the archive holds {name!r}, which is not a regular file")
        if not _safe_name(name):
            raise Refused(f"unsafe file name in the archive: {name!r}")
        if name in members:
            raise Refused(f"{name} is in the archive twice")
        members[name] = member
    return members


def _read(archive: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    if member.size > limit:
        raise Refused(f"{member.name} is implausibly large ({member.size} bytes)")
    handle = archive.extractfile(member)
    assert handle is not None
    return handle.read()


def _hash_member(
    archive: tarfile.TarFile, member: tarfile.TarInfo, dest: Path | None
) -> tuple[str, int]:
    handle = archive.extractfile(member)
    assert handle is not None
    digest, size = hashlib.sha256(), 0
    target = None if dest is None else dest / member.name
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "xb") if target is not None else _Discard() as out:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if target is not None:
        target.chmod(0o755 if member.mode & 0o100 else 0o644)
    return digest.hexdigest(), size


class _Discard:
    """A sink for --verify-only: hash without writing."""

    def __enter__(self) -> _Discard:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, data: bytes) -> int:
        return len(data)


def verify_bundle(bundle: Path, spki_der: bytes, dest: Path | None = None) -> dict[str, Any]:
    """Check everything (see the module's docstring); the report of what was checked."""
    try:
        archive = tarfile.open(bundle, "r:")  # noqa: SIM115 (closed by the with below)
    except (OSError, tarfile.TarError) as error:
        raise Refused(f"{bundle} is not a readable (uncompressed) tar archive: {error}") from None
    with archive:
        members = safe_members(archive)
        for required in (MANIFEST, SIGNATURE):
            if required not in members:
                raise Refused(f"the bundle has no {required}")
        manifest_bytes = _read(archive, members[MANIFEST], 16 << 20)
        signature = _read(archive, members[SIGNATURE], 1 << 20)
        hint = check_signature(signature, manifest_bytes, spki_der)
        try:
            manifest = json.loads(manifest_bytes)
        except ValueError:
            raise Refused(f"{MANIFEST} is not JSON") from None
        files = check_manifest(manifest)
        signatures = {MANIFEST, SIGNATURE, KEYLESS_SIGNATURE}
        extra = sorted(set(members) - set(files) - signatures)
        missing = sorted(set(files) - set(members))
        if extra:
            raise Refused(f"files not in the signed manifest: {', '.join(extra[:5])}")
        if missing:
            raise Refused(f"files of the signed manifest missing: {', '.join(missing[:5])}")
        for path, entry in files.items():
            if members[path].size != entry["size"]:
                raise Refused(
                    f"{path}: {members[path].size} bytes, the signed manifest says {entry['size']}"
                )
        if dest is not None:
            dest.mkdir(parents=True, exist_ok=True)
            for name in (MANIFEST, SIGNATURE):
                (dest / name).write_bytes(_read(archive, members[name], 16 << 20))
        total = 0
        # Small files first: a tampered model is found before the image is hashed.
        for path in sorted(files, key=lambda p: (files[p]["size"], p)):
            sha, size = _hash_member(archive, members[path], dest)
            if sha != files[path]["sha256"] or size != files[path]["size"]:
                raise Refused(
                    f"{path}: SHA-256 {sha} differs from the signed manifest "
                    f"({files[path]['sha256']}): the file was altered"
                )
            total += size
    return {
        "bundle": str(bundle),
        "key_hint": hint,
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "keyless_signature": KEYLESS_SIGNATURE in members,
        "files_checked": len(files),
        "bytes_checked": total,
        **{k: manifest.get(k) for k in ("version", "release", "git_commit", "build_time")},
        **{k: manifest.get(k) for k in ("image", "models", "chart", "health", "smoke")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bundlecheck.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--public-key", type=Path, required=True, help="the pinned key (PEM)")
    parser.add_argument("--extract-to", type=Path, help="write the checked files here (new)")
    parser.add_argument("--report", type=Path, help="write what was checked as JSON here")
    args = parser.parse_args(argv)
    try:
        spki = load_public_key(args.public_key)
        if args.extract_to is not None:
            args.extract_to.mkdir(parents=True, exist_ok=True)
            if any(args.extract_to.iterdir()):
                raise Refused(f"--extract-to {args.extract_to} is not empty")
        report = verify_bundle(args.bundle, spki, args.extract_to)
    except Refused as problem:
        print(f"REFUSED: {args.bundle.name}: {problem}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as error:
        print(f"REFUSED: {args.bundle.name}: {error}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"ok  signature: Ed25519, pinned key {report['key_hint'][:16]}…, Sigstore bundle v0.3")
    print(f"ok  archive: exactly the {report['files_checked']} files of the signed manifest")
    print(f"ok  sizes and SHA-256 of {report['files_checked']} files ({report['bytes_checked']} B)")
    print(
        f"ok  release {report['release']} (version {report['version']}, "
        f"commit {report['git_commit']}, built {report['build_time']})"
    )
    if report["keyless_signature"]:
        print("--  keyless Sigstore signature present: check it with python -m bundle verify")
    if args.report is not None:
        args.report.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
