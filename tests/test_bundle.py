"""The signed bundle's verifiers on small hand-made bundles.

``bundle verify`` (cryptography + pydantic) and the site's ``airgap/bundlecheck.py``
(standard library, pure-Python Ed25519) must agree: both accept a good bundle and both
refuse every tampering, naming the problem. No podman, no network: fast. The real
bundle (the 650 MB image inside) is built and deployed in ``tests/test_deploy.py``.

The pure-Python Ed25519 and the Sigstore signature bundle: tests/test_bundle_signing.py;
the site tools' audit log, SEG check and constraints: tests/test_airgap_site_tools.py;
what they share: tests/bundle_support.py.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from airgap import bundlecheck
from bundle.archive import write_tar
from bundle.manifest import MANIFEST, SIGNATURE
from bundle.verify import VerificationError, verify_bundle
from tests.bundle_support import (  # key_fixture: the module's key fixture
    both_refuse,
    key_fixture,  # noqa: F401
    make_bundle,
    site_check,
)

# ----------------------------------------------------------------- the verifiers


@pytest.mark.requirement("SRS-060")
def test_good_bundle_passes_both_verifiers(
    tmp_path: Path, key: tuple[Ed25519PrivateKey, Path]
) -> None:
    bundle = make_bundle(tmp_path, key[0])
    site = site_check(bundle, key[1])
    assert site.returncode == 0, site.stderr
    assert "ok  signature: Ed25519" in site.stdout and "release 7" in site.stdout
    result = verify_bundle(bundle, key[1], installed_release=6)
    assert result.manifest is not None and result.manifest.release == 7
    checked = "\n".join(result.checked)
    for what in ("signature", "exactly the 5 files", "SHA-256 of 5 files", "holds image"):
        assert what in checked
    with pytest.raises(VerificationError, match="not above the installed release 7"):
        verify_bundle(bundle, key[1], installed_release=7)


@pytest.mark.requirement("SRS-060")
def test_extract_writes_exactly_the_checked_files(
    tmp_path: Path, key: tuple[Ed25519PrivateKey, Path]
) -> None:
    bundle = make_bundle(tmp_path, key[0])
    report = bundlecheck.verify_bundle(
        bundle, bundlecheck.load_public_key(key[1]), tmp_path / "out"
    )
    assert report["files_checked"] == 5 and report["release"] == 7
    extracted = sorted(
        p.relative_to(tmp_path / "out").as_posix()
        for p in (tmp_path / "out").rglob("*")
        if p.is_file()
    )
    assert "models/ens/member.onnx" in extracted and MANIFEST in extracted
    assert (tmp_path / "out/airgap/deploy.sh").stat().st_mode & 0o111


def _flip(bundle: Path, member: str, offset: int = 0, out: Path | None = None) -> Path:
    with tarfile.open(bundle) as archive:
        position = archive.getmember(member).offset_data + offset
    target = out or bundle.with_name("tampered.tar")
    data = bytearray(bundle.read_bytes())
    data[position] ^= 0x01
    target.write_bytes(bytes(data))
    return target


@pytest.mark.requirement("SRS-060")
@pytest.mark.parametrize(
    ("member", "offset", "reason"),
    [
        ("models/ens/member.onnx", 100, "models/ens/member.onnx: SHA-256"),
        ("images/app.oci.tar", 600, "images/app.oci.tar: SHA-256"),
        (MANIFEST, 20, "manifest altered"),
        (SIGNATURE, 0, SIGNATURE),  # its JSON broken
    ],
)
def test_a_flipped_byte_is_refused_by_both(
    tmp_path: Path, key: tuple[Ed25519PrivateKey, Path], member: str, offset: int, reason: str
) -> None:
    bundle = make_bundle(tmp_path, key[0])
    both_refuse(_flip(bundle, member, offset), key[1], reason)


@pytest.mark.requirement("SRS-060")
def test_a_flipped_signature_bit_is_refused_by_both(
    tmp_path: Path, key: tuple[Ed25519PrivateKey, Path]
) -> None:
    bundle = make_bundle(tmp_path, key[0])
    with tarfile.open(bundle) as archive:
        text = archive.extractfile(SIGNATURE).read()  # type: ignore[union-attr]
    document = json.loads(text)
    signature = bytearray(base64.b64decode(document["messageSignature"]["signature"]))
    signature[5] ^= 0x01
    document["messageSignature"]["signature"] = base64.b64encode(bytes(signature)).decode()
    (tmp_path / "sig.json").write_text(json.dumps(document))
    with tarfile.open(bundle) as archive:
        members = [(m.name, archive.extractfile(m).read()) for m in archive.getmembers()]  # type: ignore[union-attr]
    replaced: list[tuple[str, Path | bytes]] = [
        (name, (tmp_path / "sig.json").read_bytes() if name == SIGNATURE else data)
        for name, data in members
    ]
    tampered = tmp_path / "bad-signature.tar"
    write_tar(tampered, replaced, 0)
    both_refuse(tampered, key[1], "does not verify")


@pytest.mark.requirement("SRS-060")
def test_another_key_extra_and_unsafe_members_are_refused(
    tmp_path: Path, key: tuple[Ed25519PrivateKey, Path]
) -> None:
    (tmp_path / "a").mkdir()
    bundle = make_bundle(tmp_path / "a", key[0])
    # Signed by a key the site did not pin.
    other = tmp_path / "other.pub"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    both_refuse(bundle, other, "not the pinned key")
    # A file the manifest does not list.
    (tmp_path / "b").mkdir()
    extra = make_bundle(tmp_path / "b", key[0], extra_members=[("airgap/evil.sh", b"rm -rf /")])
    both_refuse(extra, key[1], "files not in the signed manifest: airgap/evil.sh")
    # Path traversal and links never get past the archive check.
    (tmp_path / "c").mkdir()
    unsafe = make_bundle(tmp_path / "c", key[0], extra_members=[("../escape", b"x")])
    both_refuse(unsafe, key[1], "unsafe file name")
    with tarfile.open(bundle) as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]  # type: ignore[union-attr]
    linked = tmp_path / "link.tar"
    with tarfile.open(linked, "w") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("airgap/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    both_refuse(linked, key[1], "not a regular file")
