"""The audit entry: its schema, its canonical form and the hash chain over it.

Each line of the log is one JSON object. ``entry_hash`` is the SHA-256 of the entry's
canonical JSON (every field except ``entry_hash``, keys sorted, no spaces, UTF-8), and
``prev_hash`` is the ``entry_hash`` of the entry before it (64 zeros for the first), so
changing, removing, inserting or reordering any entry breaks the chain at that point.
The chain's code is ``airgap/auditchain.py`` (standard library only: the site's
``sitectl.py`` appends with it too); this module is the schema on top.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The chain itself (canonical JSON, hash, genesis) is the site tools' code too.
from airgap.auditchain import GENESIS_HASH, canonical_json
from airgap.auditchain import entry_hash as compute_entry_hash

SCHEMA_VERSION = 1
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

Outcome = Literal["success", "failure", "refused", "info"]


class AuditEntry(BaseModel):
    """One audit event (one line of the log).

    ``resource`` and ``details`` never hold a patient identifier in clear: identifiers
    go in as keyed hashes (``hash_identifier``); ``AuditLog.append`` hashes known
    identifier keys in ``details`` itself.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION
    timestamp: str = Field(description="UTC, ISO 8601")
    sequence: int = Field(ge=1, description="1 for the first entry, +1 for each next")
    event_type: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")
    actor: str = Field(min_length=1, max_length=128, description="component or user")
    resource: str = Field(max_length=512, description="what was acted on (hashed ids)")
    action: str = Field(min_length=1, max_length=64)
    outcome: Outcome = "success"
    details: dict[str, Any] = Field(default_factory=dict)
    correlation_id: str | None = None
    code_version: str | None = None
    data_version: str | None = None
    model_version: str | None = None
    prev_hash: str
    entry_hash: str

    @field_validator("prev_hash", "entry_hash")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if not _HEX64.match(value):
            raise ValueError("must be 64 lowercase hex digits (SHA-256)")
        return value

    @field_validator("timestamp")
    @classmethod
    def _iso_utc(cls, value: str) -> str:
        if not value.endswith("Z"):
            raise ValueError("timestamp must be UTC ending in 'Z'")
        datetime.fromisoformat(value.removesuffix("Z") + "+00:00")
        return value

    def to_line(self) -> bytes:
        """The JSON line as written to the log (sorted keys, newline-terminated)."""
        return canonical_json(self.model_dump(mode="json")) + b"\n"

    @classmethod
    def seal(cls, **fields: Any) -> AuditEntry:
        """Build an entry from its fields (without ``entry_hash``) and compute the hash."""
        draft = cls.model_construct(**fields, entry_hash=GENESIS_HASH)
        data = draft.model_dump(mode="json")
        data["entry_hash"] = compute_entry_hash(data)
        return cls.model_validate(data)
