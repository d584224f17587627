"""Tamper-evident audit log of the appliance (see ``compliance/docs/audit-log.md``).

    from compliance.audit import AuditLog
    log = AuditLog("var/audit/audit.jsonl", hmac_key=Path("site.key"))
    log.append(event_type="inference", actor="pipeline", resource="series:" +
               log.hash_identifier(series_uid), action="segment", details={...})

CLI: ``python -m compliance.audit {keygen,append,checkpoint,verify}``.
"""

from compliance.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    generate_signing_key,
    load_private_key,
    load_public_key,
    read_checkpoints,
    sign_checkpoint,
)
from compliance.audit.events import (
    record_deploy,
    record_export,
    record_inference,
    record_study_received,
    record_test_set_access,
)
from compliance.audit.identifiers import (
    MissingKeyError,
    generate_hmac_key,
    hash_identifier,
    load_hmac_key,
)
from compliance.audit.log import AuditLog
from compliance.audit.schema import GENESIS_HASH, AuditEntry
from compliance.audit.verify import Finding, VerifyReport, verify_chain, verify_log

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLog",
    "Checkpoint",
    "CheckpointError",
    "Finding",
    "MissingKeyError",
    "VerifyReport",
    "generate_hmac_key",
    "generate_signing_key",
    "hash_identifier",
    "load_hmac_key",
    "load_private_key",
    "load_public_key",
    "read_checkpoints",
    "record_deploy",
    "record_export",
    "record_inference",
    "record_study_received",
    "record_test_set_access",
    "sign_checkpoint",
    "verify_chain",
    "verify_log",
]
