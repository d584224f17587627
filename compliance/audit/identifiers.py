"""Keyed hashes of identifiers that could be PHI, and the site key they use.

Patient ID, patient name, accession number and the DICOM UIDs (study, series, SOP
instance) are never written to the audit log in clear. They are replaced by
``hmac-sha256:<hex>``, an HMAC-SHA256 under a per-site secret key: the same identifier
hashes alike within a site (an auditor holding the key can check "was study X
processed?"), but the hash cannot be reversed or recomputed without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HASH_PREFIX = "hmac-sha256:"
_HASHED = re.compile(r"^hmac-sha256:[0-9a-f]{64}$")
# A DICOM UID (root 1.x or 2.x, at least five components) is hashed under any key name.
_DICOM_UID = re.compile(r"^[12](\.(0|[1-9][0-9]*)){4,}$")


def _normalise(name: str) -> str:
    """Lower case letters only, singular: ``SOP_Instance_UIDs`` -> ``sopinstanceuid``."""
    return re.sub(r"[^a-z]", "", name.lower()).removesuffix("s")


# Keys (compared normalised) whose values are identifiers to hash.
PHI_KEYS = frozenset(
    _normalise(name)
    for name in (
        "patientid",
        "patientname",
        "patientbirthdate",
        "otherpatientids",
        "accession",
        "accessionnumber",
        "studyinstanceuid",
        "studyuid",
        "seriesinstanceuid",
        "seriesuid",
        "sopinstanceuid",
        "sopuid",
        "instanceuid",
        "studyid",
        "patient",
    )
)


class MissingKeyError(RuntimeError):
    """An identifier must be hashed but no site key is configured."""


def generate_hmac_key(path: Path) -> None:
    """Write a new random 256-bit site key (hex) readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")


def load_hmac_key(path: Path | str | None = None) -> bytes:
    """Read the site key from ``path`` or the file named by $MINIVESS_AUDIT_HMAC_KEY_FILE."""
    if path is None:
        from settings.base import load
        from settings.site import AuditSettings

        path = load(AuditSettings).audit_hmac_key_file
        if path is None:
            raise MissingKeyError(
                "no audit HMAC key: pass one or set MINIVESS_AUDIT_HMAC_KEY_FILE "
                "(create it with: python -m compliance.audit keygen --hmac-key FILE)"
            )
    text = Path(path).read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError(f"{path}: audit HMAC key must be hex") from exc
    if len(key) < 16:
        raise ValueError(f"{path}: audit HMAC key must be at least 128 bits")
    return key


def is_hashed(value: object) -> bool:
    return isinstance(value, str) and bool(_HASHED.match(value))


def hash_identifier(value: str, key: bytes | None = None) -> str:
    """``hmac-sha256:<hex>`` of an identifier; idempotent on an already hashed value.

    Without ``key`` the site key is read from $MINIVESS_AUDIT_HMAC_KEY_FILE; there is no
    unkeyed fallback (a plain SHA-256 of a patient ID can be brute-forced).
    """
    if is_hashed(value):
        return value
    if key is None:
        key = load_hmac_key()
    digest = hmac.new(key, value.strip().encode(), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest


def protect(value: Any, key: bytes | None, *, phi: bool = False) -> Any:
    """Copy of a details value with identifiers hashed and non-finite floats as text.

    Values under a key in ``PHI_KEYS`` (at any depth, singular or plural) and strings
    that look like DICOM UIDs are hashed; without a key that is an error, never a
    clear-text write.
    """
    if isinstance(value, Mapping):
        return {
            str(k): protect(v, key, phi=phi or _normalise(str(k)) in PHI_KEYS)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [protect(item, key, phi=phi) for item in value]
    if isinstance(value, str) and _DICOM_UID.match(value):
        phi = True
    if phi and value is not None:
        if key is None and not is_hashed(value):
            raise MissingKeyError("an identifier was given for the audit log but no HMAC key")
        return hash_identifier(str(value), key)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return protect(item(), key, phi=phi)
        except (TypeError, ValueError):
            pass
    return str(value)
