"""``AuditLog``: append-only, hash-chained JSON lines, safe for many writers.

Every append takes an exclusive ``flock`` on the log file, reads the last entry's
sequence and hash, writes the new line with one ``write`` on an ``O_APPEND`` descriptor
and ``fsync``s before the lock is released: threads and processes (each append opens
its own descriptor, and flock locks belong to the open file) never interleave or fork
the chain, and an entry that ``append`` returned is on disk.

Repair policy for a crash mid-write: the torn (unterminated) last line is kept as
evidence, never rewritten. The next append first terminates it with a newline and then
chains its entry to the last *complete* entry. ``verify`` reports such a line as a torn
write (a warning: the chain shows that no committed entry was lost there) and every
other entry still verifies.

The chain mechanics (lock, tail, append, hash) are ``airgap/auditchain.py``, shared with
the site's ``sitectl.py``; this class adds the schema, identifier hashing and checkpoints.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airgap import auditchain
from compliance.audit.identifiers import hash_identifier, load_hmac_key, protect
from compliance.audit.schema import AuditEntry, Outcome
from settings.base import load
from settings.site import AuditSettings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from compliance.audit.checkpoint import Checkpoint


def detect_code_version() -> str:
    """$MINIVESS_CODE_VERSION (set in the image), else the git commit, else 'unknown'."""
    if version := load(AuditSettings).code_version:
        return version
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def read_tail(fd: int) -> tuple[int, str, bool]:
    """(last sequence, last entry hash, torn) of the log open at ``fd``: the chain's
    ``read_tail`` over the lines that are valid entries of this schema."""
    return auditchain.read_tail(fd, _link)


def _link(line: bytes) -> tuple[int, str] | None:
    """(sequence, entry_hash) of the entry on a line, or None for a torn or unreadable
    (or schema-invalid) line.

    The stored hash is not rechecked: the next entry chains to what is written, so an
    edited last entry shows in ``verify`` as exactly that, an edit.
    """
    try:
        entry = AuditEntry.model_validate_json(line)
    except ValueError:
        return None
    return entry.sequence, entry.entry_hash


class AuditLog:
    """One audit log file. Cheap to create; every ``append`` is self-contained.

    ``hmac_key`` (bytes, or a path to the site key file) is needed to hash identifiers;
    without one, an identifier passed to ``append`` is an error rather than a clear-text
    write. With ``signing_key`` (an Ed25519 private key) and ``checkpoint_every=N``, a
    signed checkpoint of the log is appended to ``<log>.checkpoints`` every N entries.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        hmac_key: bytes | Path | str | None = None,
        code_version: str | None = None,
        data_version: str | None = None,
        model_version: str | None = None,
        signing_key: Ed25519PrivateKey | None = None,
        checkpoint_every: int = 0,
        origin: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.hmac_key = (
            hmac_key
            if isinstance(hmac_key, bytes) or hmac_key is None
            else (load_hmac_key(hmac_key))
        )
        self.code_version = code_version if code_version is not None else detect_code_version()
        self.data_version = data_version
        self.model_version = model_version
        self.signing_key = signing_key
        self.checkpoint_every = checkpoint_every
        self.origin = origin or self.path.name
        self._thread_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: AuditSettings | None = None, **kwargs: Any) -> AuditLog:
        """The site's log: $MINIVESS_AUDIT_LOG (default var/audit/audit.jsonl) and the
        key named by $MINIVESS_AUDIT_HMAC_KEY_FILE when set."""
        settings = settings or load(AuditSettings)
        kwargs.setdefault("hmac_key", settings.audit_hmac_key_file)
        return cls(settings.audit_log, **kwargs)

    @property
    def checkpoints_path(self) -> Path:
        return self.path.with_name(self.path.name + ".checkpoints")

    def hash_identifier(self, value: str) -> str:
        """The keyed hash this log uses for an identifier (patient ID, accession, UID)."""
        return hash_identifier(value, self._key())

    def append(
        self,
        *,
        event_type: str,
        actor: str,
        resource: str,
        action: str,
        outcome: Outcome = "success",
        details: Mapping[str, Any] | None = None,
        identifiers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
        code_version: str | None = None,
        data_version: str | None = None,
        model_version: str | None = None,
    ) -> AuditEntry:
        """Append one entry (durable when this returns) and return it.

        ``identifiers`` (e.g. ``{"patient_id": ..., "study_uid": ...}``) are stored in
        ``details["identifiers"]`` as keyed hashes; identifier-named keys anywhere in
        ``details`` are hashed too.
        """
        body = dict(details or {})
        if identifiers:
            body["identifiers"] = {
                name: hash_identifier(value, self._key()) for name, value in identifiers.items()
            }
        safe_details = protect(body, self.hmac_key)
        fields = {
            "timestamp": "",
            "event_type": event_type,
            "actor": actor,
            "resource": resource,
            "action": action,
            "outcome": outcome,
            "details": safe_details,
            "correlation_id": correlation_id,
            "code_version": code_version or self.code_version,
            "data_version": data_version or self.data_version,
            "model_version": model_version or self.model_version,
        }
        with self._thread_lock, auditchain.locked(self.path) as fd:
            sequence, prev_hash, torn = read_tail(fd)
            fields["timestamp"] = auditchain.utc_timestamp()
            entry = AuditEntry.seal(**fields, sequence=sequence + 1, prev_hash=prev_hash)
            auditchain.write_line(fd, entry.to_line(), torn)
            if self.checkpoint_every > 0 and entry.sequence % self.checkpoint_every == 0:
                self._write_checkpoint(entry.sequence, entry.entry_hash)
        return entry

    def checkpoint(self) -> Checkpoint:
        """Sign the current head now; append it to ``<log>.checkpoints`` and return it."""
        if self.signing_key is None:
            raise ValueError("checkpoint needs a signing key")
        with auditchain.locked(self.path) as fd:
            sequence, head, _ = read_tail(fd)
            checkpoint = self._write_checkpoint(sequence, head)
        assert checkpoint is not None
        return checkpoint

    def _write_checkpoint(self, count: int, head_hash: str) -> Checkpoint | None:
        from compliance.audit.checkpoint import sign_checkpoint

        if self.signing_key is None:
            return None
        checkpoint = sign_checkpoint(self.signing_key, self.origin, count, head_hash)
        with open(self.checkpoints_path, "a", encoding="utf-8") as handle:
            handle.write(checkpoint.model_dump_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return checkpoint

    def _key(self) -> bytes:
        if self.hmac_key is None:
            return load_hmac_key()  # raises MissingKeyError with instructions
        return self.hmac_key
