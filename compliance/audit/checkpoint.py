"""Signed checkpoints of the audit log: (entry count, head hash, time) under Ed25519.

The hash chain shows an edit inside the log but not a rewrite of the whole chain or a
cut-off tail. A checkpoint signed with the site's release of the audit signing key, and
exported off the appliance, closes both: a verifier holding the public key checks that
entry ``count`` of the log still has the signed ``head_hash`` (so nothing up to it was
rewritten) and that the log is not shorter (no truncation).

The signed text follows the C2SP signed-note layout::

    minivess-audit/<origin>
    <count>
    <head_hash>
    <timestamp>
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from airgap.auditchain import utc_timestamp


class CheckpointError(ValueError):
    """A checkpoint is malformed or its signature does not verify."""


class Checkpoint(BaseModel):
    """One exported checkpoint (a small JSON file or one line of ``<log>.checkpoints``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    origin: str = Field(min_length=1, pattern=r"^[^\n]+$")
    count: int = Field(ge=0)
    head_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    timestamp: str
    key_id: str = Field(pattern=r"^[0-9a-f]{8}$")
    signature: str = Field(description="base64 Ed25519 signature over note_body()")

    def note_body(self) -> bytes:
        return note_body(self.origin, self.count, self.head_hash, self.timestamp)

    def verify(self, public_key: Ed25519PublicKey) -> None:
        """Raise ``CheckpointError`` unless the signature is by ``public_key``."""
        if self.key_id != key_id(public_key):
            raise CheckpointError(
                f"checkpoint was signed by key {self.key_id}, not by the given public key "
                f"{key_id(public_key)}"
            )
        try:
            public_key.verify(base64.b64decode(self.signature), self.note_body())
        except (InvalidSignature, ValueError) as exc:
            raise CheckpointError("checkpoint signature does not verify") from exc


def note_body(origin: str, count: int, head_hash: str, timestamp: str) -> bytes:
    return f"minivess-audit/{origin}\n{count}\n{head_hash}\n{timestamp}\n".encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:8]


def sign_checkpoint(
    private_key: Ed25519PrivateKey, origin: str, count: int, head_hash: str
) -> Checkpoint:
    timestamp = utc_timestamp()
    signature = private_key.sign(note_body(origin, count, head_hash, timestamp))
    return Checkpoint(
        origin=origin,
        count=count,
        head_hash=head_hash,
        timestamp=timestamp,
        key_id=key_id(private_key.public_key()),
        signature=base64.b64encode(signature).decode(),
    )


def generate_signing_key(private_path: Path, public_path: Path) -> str:
    """Write a new Ed25519 key pair (PEM; private key mode 0600); return its key id."""
    private_key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_id(private_key.public_key())


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError(f"{path}: not an Ed25519 public key")
    return key


def read_checkpoints(path: Path | str) -> list[Checkpoint]:
    """Checkpoints from an exported JSON file or a ``.checkpoints`` JSON-lines file."""
    text = Path(path).read_text()
    stripped = text.strip()
    if not stripped:
        return []
    if stripped.startswith("{") and "\n{" not in stripped:
        return [Checkpoint.model_validate_json(stripped)]
    return [Checkpoint.model_validate_json(line) for line in text.splitlines() if line.strip()]
