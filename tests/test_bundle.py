"""The signed bundle's format and both of its verifiers, on small hand-made bundles.

``bundle verify`` (cryptography + pydantic) and the site's ``airgap/bundlecheck.py``
(standard library, pure-Python Ed25519) must agree: both accept a good bundle and both
refuse every tampering, naming the problem. No podman, no network: fast. The real
bundle (the 650 MB image inside) is built and deployed in ``tests/test_deploy.py``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from airgap import bundlecheck, ed25519, sitectl
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
from compliance.audit import AuditLog
from compliance.audit.verify import verify_log

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


@pytest.fixture
def key(tmp_path: Path) -> tuple[Ed25519PrivateKey, Path]:
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


# ------------------------------------------------------------------------- Ed25519


RFC8032_VECTORS = [  # RFC 8032 section 7.1, tests 1-3: public key, message, signature
    (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


@pytest.mark.requirement("SRS-060")
@pytest.mark.parametrize(("public", "message", "signature"), RFC8032_VECTORS)
def test_pure_python_ed25519_rfc8032_vectors(public: str, message: str, signature: str) -> None:
    pk, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert ed25519.verify(pk, msg, sig)
    assert not ed25519.verify(pk, msg + b"x", sig)
    assert not ed25519.verify(pk, msg, sig[:63] + bytes([sig[63] ^ 1]))


@pytest.mark.requirement("SRS-060")
def test_pure_python_ed25519_agrees_with_cryptography() -> None:
    for index in range(20):
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        message = hashlib.sha512(bytes([index])).digest() * index
        signature = private.sign(message)
        assert ed25519.verify(public, message, signature)
        flipped = bytearray(signature)
        flipped[index % 64] ^= 0x40
        assert not ed25519.verify(public, message, bytes(flipped))
        other = Ed25519PrivateKey.generate().public_key()
        assert not ed25519.verify(
            other.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
            message,
            signature,
        )
    # S >= L (a malleable encoding) and a non-point R are refused, as OpenSSL does.
    private = Ed25519PrivateKey.generate()
    pk = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    signature = private.sign(b"m")
    s = int.from_bytes(signature[32:], "little") + ed25519.L
    assert not ed25519.verify(pk, b"m", signature[:32] + s.to_bytes(32, "little"))
    assert not ed25519.verify(pk, b"m", b"\xff" * 32 + signature[32:])


# ------------------------------------------------------------------- signature bundle


@pytest.mark.requirement("SRS-060")
def test_signature_is_a_sigstore_v03_public_key_bundle(key: tuple[Ed25519PrivateKey, Path]) -> None:
    from sigstore_models.bundle.v1 import Bundle

    private, public = key
    document = signing.sign_manifest(b'{"release": 1}\n', private)
    parsed = Bundle.model_validate_json(json.dumps(document))  # the Sigstore schema
    assert parsed.media_type == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert parsed.verification_material.public_key is not None
    assert parsed.verification_material.public_key.hint == bundlecheck.key_hint(
        bundlecheck.load_public_key(public)
    )
    digest = document["messageSignature"]["messageDigest"]
    assert digest["algorithm"] == "SHA2_256"
    assert base64.b64decode(digest["digest"]) == hashlib.sha256(b'{"release": 1}\n').digest()


def test_key_signature_is_checked_against_the_sigstore_schema(
    key: tuple[Ed25519PrivateKey, Path],
) -> None:
    """A bundle outside the Sigstore schema (sigstore-models) is refused before its values."""
    private, public = key
    manifest = b'{"release": 1}\n'
    document = signing.sign_manifest(manifest, private)
    pinned = signing.load_public_key(public)
    assert signing.verify_key_signature(json.dumps(document).encode(), manifest, pinned)
    for broken in (
        {**document, "unexpected": 1},  # a field the schema does not have
        {**document, "dsseEnvelope": {"payload": "", "payloadType": "x", "signatures": []}},
    ):
        with pytest.raises(signing.SigningError, match="not a key-based Sigstore bundle"):
            signing.verify_key_signature(json.dumps(broken).encode(), manifest, pinned)


def test_keyless_signing_is_skipped_without_an_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SIGSTORE_ID_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL"):
        monkeypatch.delenv(name, raising=False)
    signed, message = signing.keyless_sign(b"manifest", "auto")
    assert signed is None and "no OIDC identity" in message
    with pytest.raises(signing.SigningError, match="no OIDC identity"):
        signing.keyless_sign(b"manifest", "require")


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


# ------------------------------------------------------------------------ audit log


@pytest.mark.requirement("SRS-077")
def test_site_audit_entries_chain_with_the_services_entries(tmp_path: Path) -> None:
    """deploy.sh's stdlib appender writes entries compliance.audit verifies, interleaved
    with entries the service writes (pydantic), torn last line included."""
    log = tmp_path / "audit" / "audit.jsonl"
    service = AuditLog(log, hmac_key=b"k" * 32)
    service.append(event_type="study", actor="gateway", resource="study:x", action="receive")
    entry = sitectl.append_audit(
        log, event_type="deploy", actor="deploy.sh", resource="release:3", action="verify",
        outcome="refused", details={"problem": "manifest altered"}, code_version="deploy.sh@1",
    )  # fmt: skip
    assert entry["sequence"] == 2
    with log.open("ab") as handle:
        handle.write(b'{"torn": ')  # a crash mid-write
    done = subprocess.run(
        [*SITE_PYTHON, str(REPO / "airgap/sitectl.py"), "audit", "--log", str(log),
         "--action", "install", "--outcome", "success", "--resource", "release:3",
         "--details", '{"image": "abc"}'],
        capture_output=True, text=True, check=False, cwd="/",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    service.append(event_type="study", actor="exporter", resource="study:x", action="export")
    report = verify_log(log)
    assert report.ok, report.findings
    assert report.entries == 4
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]
    assert [(e["actor"], e["action"], e["outcome"]) for e in entries] == [
        ("gateway", "receive", "success"),
        ("deploy.sh", "verify", "refused"),
        ("deploy.sh", "install", "success"),
        ("exporter", "export", "success"),
    ]


def test_seg_check_reads_the_media_storage_sop_class(tmp_path: Path) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    from synthetic.case import Modality, generate_case
    from synthetic.dicom_series import write_series

    write_series(generate_case(3, Modality.CT), tmp_path / "study")
    first = sorted((tmp_path / "study").iterdir())[0]
    assert sitectl.media_sop_class(first) == "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    assert sitectl.check_seg(tmp_path) == []
    import pydicom

    ds = pydicom.dcmread(first)
    ds.file_meta = FileMetaDataset(ds.file_meta)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = UID(sitectl.SEG_SOP_CLASS)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    (tmp_path / "out").mkdir()
    ds.save_as(tmp_path / "out" / "vessel-seg.dcm", enforce_file_format=True)
    assert sitectl.check_seg(tmp_path / "out") == [tmp_path / "out" / "vessel-seg.dcm"]
    (tmp_path / "out" / "vessel-seg.dcm").write_bytes(b"not dicom")
    assert sitectl.check_seg(tmp_path / "out") == []


def test_site_tools_need_only_the_standard_library() -> None:
    """Syntax for Python >= 3.8 and imports from the stdlib only (or each other)."""
    import ast

    site_tools = sorted((REPO / "airgap").glob("*.py"))
    stdlib = set(sys.stdlib_module_names) | {"airgap"} | {path.stem for path in site_tools}
    for path in site_tools:
        tree = ast.parse(path.read_text(), feature_version=(3, 8))
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            for name in names:
                assert name.split(".")[0] in stdlib | {"__future__"}, f"{path.name}: {name}"


def test_deploy_scripts_pass_shellcheck() -> None:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.fail("shellcheck not found: apt-get install shellcheck", pytrace=False)
    done = subprocess.run(
        [exe, str(REPO / "airgap/deploy.sh"), str(REPO / "airgap/health.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout
