"""Release keys and the manifest's signatures, stored as Sigstore bundles (v0.3).

Key-based (always): the release key is Ed25519 (deterministic signatures, small keys,
and a verifier short enough to ship in pure Python to sites: ``airgap/ed25519.py``).
The signature over the exact bytes of ``manifest.json`` goes into a Sigstore bundle
with ``verificationMaterial.publicKey.hint`` (SHA-256 of the DER public key) and a
``messageSignature`` (SHA2_256 digest of the manifest + the signature), built with
sigstore-models' typed bundle. No transparency log: sites are offline and pin the public
key instead. sigstore-python cannot verify public-key bundles, so
:func:`verify_key_signature` does it with ``cryptography``.

Keyless (optional, CI): when an OIDC identity token is available (``SIGSTORE_ID_TOKEN``,
or GitHub Actions' ambient credential), sigstore-python adds a Fulcio/Rekor signature as
``manifest.json.keyless.sigstore.json``; it is verified offline against the trusted root
shipped with sigstore-python (``bundle verify --keyless-identity ... --keyless-issuer``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sigstore_models.bundle.v1 import BUNDLE_MEDIA_TYPES, Bundle, VerificationMaterial
from sigstore_models.common.v1 import (
    HashAlgorithm,
    HashOutput,
    MessageSignature,
    PublicKeyIdentifier,
)

from bundle.manifest import SIGNATURE, SIGSTORE_MEDIA_TYPE
from settings.base import load
from settings.site import SigningSettings

KeylessMode = Literal["auto", "never", "require"]


class SigningError(RuntimeError):
    """A key cannot be used, or a signature does not verify; the message says why."""


def _passphrase() -> str | None:
    """$MINIVESS_RELEASE_KEY_PASSPHRASE (or its secret file), if any."""
    secret = load(SigningSettings).release_key_passphrase
    return secret.get_secret_value() if secret is not None else None


def public_key_der(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_hint(public_key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the DER SubjectPublicKeyInfo: the Sigstore ``publicKey.hint``."""
    return hashlib.sha256(public_key_der(public_key)).hexdigest()


def keygen(private_path: Path, public_path: Path) -> str:
    """A new Ed25519 release key pair (private PKCS#8 PEM, 0600; encrypted when
    $MINIVESS_RELEASE_KEY_PASSPHRASE is set); returns the key hint."""
    if private_path.exists():
        raise SigningError(f"{private_path} exists: not overwriting a release key")
    key = Ed25519PrivateKey.generate()
    passphrase = _passphrase()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_hint(key.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    passphrase = _passphrase()
    try:
        key = serialization.load_pem_private_key(
            path.read_bytes(), password=passphrase.encode() if passphrase else None
        )
    except (OSError, ValueError, TypeError) as error:
        raise SigningError(f"cannot load the release key {path}: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as error:
        raise SigningError(f"cannot load the public key {path}: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"{path} is not an Ed25519 public key")
    return key


def sign_manifest(manifest_bytes: bytes, key: Ed25519PrivateKey) -> dict[str, Any]:
    """The Sigstore bundle (v0.3, public-key hint) of an Ed25519 signature, as JSON data."""
    # sigstore-models' bytes fields take base64 and decode it when validated.
    digest = base64.b64encode(hashlib.sha256(manifest_bytes).digest())
    bundle = Bundle(
        media_type=cast(BUNDLE_MEDIA_TYPES, SIGSTORE_MEDIA_TYPE),  # the model checks it
        verification_material=VerificationMaterial(
            public_key=PublicKeyIdentifier(hint=key_hint(key.public_key())), tlog_entries=[]
        ),
        message_signature=MessageSignature(
            message_digest=HashOutput(algorithm=HashAlgorithm.SHA2_256, digest=digest),
            signature=base64.b64encode(key.sign(manifest_bytes)),
        ),
    )
    return bundle.to_dict()


def verify_key_signature(
    bundle_bytes: bytes, manifest_bytes: bytes, public_key: Ed25519PublicKey
) -> str:
    """Check a key-based Sigstore bundle against the manifest and the pinned key."""
    try:
        # The Sigstore bundle schema first (sigstore-models); the values are then read as the
        # site's verifier (airgap/bundlecheck.py) reads them: its base64 is strict, where the
        # model's decoding drops characters outside the alphabet.
        Bundle.from_json(bundle_bytes)
        bundle = json.loads(bundle_bytes)
        hint = bundle["verificationMaterial"]["publicKey"]["hint"]
        message = bundle["messageSignature"]
        algorithm = message["messageDigest"]["algorithm"]
        digest = base64.b64decode(message["messageDigest"]["digest"], validate=True)
        signature = base64.b64decode(message["signature"], validate=True)
    except (ValueError, KeyError, TypeError) as error:
        raise SigningError(f"{SIGNATURE}: not a key-based Sigstore bundle: {error!r}") from None
    if bundle.get("mediaType") != SIGSTORE_MEDIA_TYPE:
        raise SigningError(f"media type {bundle.get('mediaType')!r}, not {SIGSTORE_MEDIA_TYPE}")
    pinned = key_hint(public_key)
    if hint != pinned:
        raise SigningError(f"signed with another key (hint {hint}), not the pinned key {pinned}")
    if algorithm != "SHA2_256" or digest != hashlib.sha256(manifest_bytes).digest():
        raise SigningError("manifest.json does not match the signed digest (manifest altered)")
    try:
        public_key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise SigningError("the signature of manifest.json does not verify") from None
    return pinned


# -------------------------------------------------------------------------- keyless


def ambient_identity_available() -> bool:
    """An OIDC identity token is at hand without a browser (CI release jobs)."""
    return bool(
        os.environ.get("SIGSTORE_ID_TOKEN")
        or (
            os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
            and os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        )
    )


def keyless_sign(manifest_bytes: bytes, mode: KeylessMode) -> tuple[str | None, str]:
    """(Sigstore bundle JSON or None, what happened). Needs the network (Fulcio, Rekor)."""
    if mode == "never":
        return None, "keyless Sigstore signature: not requested (--keyless never)"
    if not ambient_identity_available():
        message = (
            "keyless Sigstore signature skipped: no OIDC identity available "
            "(set SIGSTORE_ID_TOKEN or run in a CI job with an ID token)"
        )
        if mode == "require":
            raise SigningError(message)
        return None, message
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityToken, detect_credential
    from sigstore.sign import SigningContext

    raw = os.environ.get("SIGSTORE_ID_TOKEN") or detect_credential()
    if not raw:
        raise SigningError("no OIDC identity token could be obtained")
    token = IdentityToken(raw)
    context = SigningContext.from_trust_config(ClientTrustConfig.production())
    with context.signer(token) as signer:
        signed = signer.sign_artifact(manifest_bytes)
    return signed.to_json(), f"keyless Sigstore signature added ({token.identity})"


def verify_keyless(bundle_bytes: bytes, manifest_bytes: bytes, identity: str, issuer: str) -> str:
    """Offline verification of the keyless signature (sigstore-python's trusted root)."""
    from sigstore.errors import VerificationError
    from sigstore.models import Bundle
    from sigstore.verify import Verifier, policy

    try:
        bundle = Bundle.from_json(bundle_bytes)
        Verifier.production(offline=True).verify_artifact(
            manifest_bytes, bundle, policy.Identity(identity=identity, issuer=issuer)
        )
    except (VerificationError, ValueError) as error:
        raise SigningError(f"keyless signature does not verify: {error}") from None
    return f"keyless Sigstore signature verified offline: {identity} ({issuer})"
