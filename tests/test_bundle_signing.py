"""The release signature: the site's pure-Python Ed25519 (RFC 8032 vectors, agreement with
cryptography, malleable and invalid encodings refused) and the Sigstore v0.3 public-key
bundle that holds the signature (schema, key-based only, keyless signing without an
identity).

What the bundle tests share: tests/bundle_support.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from airgap import bundlecheck, ed25519
from bundle import signing
from tests.bundle_support import key_fixture  # noqa: F401  (the key fixture)

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
