"""The site's test cases get the synthetic test split's lockout: hash recorded, reads audited.

The first read records the content hash (``synthetic.splits`` digest) in a lock file,
keyed by the dataset's folder name; every read, the first included, goes to the audit
log before the decision (``compliance.audit.events.record_test_set_access``, as for the
synthetic test split), and a read whose content differs from the recorded hash raises
``synthetic.splits.TestSetLockoutError`` before a case is used. A site that replaces its
test set on purpose removes its entry from the lock file: a visible, deliberate act.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from compliance.audit.events import record_test_set_access
from synthetic.splits import TestSetLockoutError


def _locks(lock_file: Path) -> dict[str, dict[str, object]]:
    if not lock_file.is_file():
        return {}
    data = json.loads(lock_file.read_text())
    if not isinstance(data, dict):
        raise TestSetLockoutError(f"{lock_file}: not a site test lock file")
    return data


def recorded_sha256(root: Path, lock_file: Path) -> str | None:
    entry = _locks(lock_file).get(root.name)
    return str(entry["test_sha256"]) if entry else None


def check_site_test_lock(
    root: Path, actual_sha256: str, cases: int, lock_file: Path, *, purpose: str
) -> str:
    """Audit this read of ``root``'s test cases and enforce (or first record) its hash."""
    locks = _locks(lock_file)
    entry = locks.get(root.name)
    if entry is None:
        # First read: the hash is recorded before the audit entry that names it, so the
        # entry states the check against the now locked value.
        locks[root.name] = {
            "test_sha256": actual_sha256,
            "test_cases": cases,
            "recorded": datetime.now(UTC).replace(microsecond=0).isoformat(),
        }
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        partial = lock_file.with_suffix(".tmp")
        partial.write_text(json.dumps(locks, indent=2, sort_keys=True) + "\n")
        os.replace(partial, lock_file)
        purpose = f"{purpose}; first read: content hash recorded in {lock_file}"
        expected = actual_sha256
    else:
        expected = str(entry["test_sha256"])
    record_test_set_access(
        root / "test", expected_sha256=expected, actual_sha256=actual_sha256, purpose=purpose
    )
    if actual_sha256 != expected:
        raise TestSetLockoutError(
            f"{root}: the site test cases' content SHA-256 is {actual_sha256}, but "
            f"{lock_file} locks {expected}: the test set was altered. A deliberately new "
            f"test set needs its entry '{root.name}' removed from the lock file"
        )
    return actual_sha256
