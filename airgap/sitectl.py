"""Site-side helpers of ``deploy.sh``, standard library only (the site's ``python3``).

    sitectl.py audit --log LOG --action A --outcome O --resource R [--details JSON]
    sitectl.py get FILE FIELD                     a value of a JSON file (a.b.c), or nothing
    sitectl.py state install --home H --report R --image-ref REF
    sitectl.py state rollback --home H            previous and current swap
    sitectl.py state note --home H --action A --release N --outcome O [--problem TEXT]
    sitectl.py state show --home H
    sitectl.py check-seg DIR                      a DICOM Segmentation was written under DIR

The audit entries are the site audit log's own format, appended by the chain code the
appliance's ``compliance.audit`` uses too (``auditchain.py`` next to this file: JSON
lines, canonical JSON, SHA-256 hash chain, ``flock``, ``fsync``), without pydantic so
that deploy.sh can record a refusal before any image is trusted;
``python -m compliance.audit verify`` checks them like every other entry. The release
state is ``HOME/state.json`` (current and previous release, history), replaced
atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

try:
    from airgap import auditchain
except ImportError:  # run as a script next to auditchain.py (deploy.sh on a site)
    import auditchain  # type: ignore[no-redef]

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


# --------------------------------------------------------------------------- audit


def append_audit(log: Path, **fields: Any) -> dict[str, Any]:
    """Append one entry (durable when this returns); a new log gets its folder's owner."""
    created = not log.exists()
    with auditchain.locked(log) as fd:
        if created and os.geteuid() == 0:  # the service (uid 10001) appends to it too
            owner = os.stat(log.parent)
            os.fchown(fd, owner.st_uid, owner.st_gid)
        sequence, prev_hash, torn = auditchain.read_tail(fd)
        entry: dict[str, Any] = {
            "schema_version": 1,
            "timestamp": auditchain.utc_timestamp(),
            "sequence": sequence + 1,
            "correlation_id": None,
            "data_version": None,
            "model_version": None,
            "prev_hash": prev_hash,
            **fields,
        }
        entry["entry_hash"] = auditchain.entry_hash(entry)
        auditchain.write_line(fd, auditchain.canonical_json(entry) + b"\n", torn)
    return entry


# --------------------------------------------------------------------------- state


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def get_field(data: Any, field: str) -> Any:
    for part in field.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _state(home: Path) -> dict[str, Any]:
    return read_json(home / "state.json") or {
        "schema_version": 1,
        "current": None,
        "previous": None,
        "history": [],
    }


def _write_state(home: Path, state: dict[str, Any]) -> None:
    path = home / "state.json"
    partial = path.with_name(".state.json.partial")
    with partial.open("w") as handle:
        handle.write(json.dumps(state, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)
    directory = os.open(home, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _history(state: dict[str, Any], action: str, release: Any, outcome: str, **more: Any) -> None:
    at = auditchain.utc_timestamp()
    event = {"at": at, "action": action, "release": release, "outcome": outcome, **more}
    state["history"] = [*(state.get("history") or [])[-49:], event]


def state_install(home: Path, report: dict[str, Any], image_ref: str) -> dict[str, Any]:
    state = _state(home)
    new = {
        key: report.get(key)
        for key in ("release", "version", "git_commit", "build_time", "manifest_sha256")
    }
    installed_at = auditchain.utc_timestamp()
    new.update(image_id=report["image"]["id"], image_ref=image_ref, installed_at=installed_at)
    current = state.get("current")
    if current and current.get("release") != new["release"]:
        state["previous"] = current
    state["current"] = new
    _history(state, "install", new["release"], "success")
    _write_state(home, state)
    return state


def state_rollback(home: Path) -> dict[str, Any]:
    state = _state(home)
    if not state.get("previous"):
        raise SystemExit("no previous release to roll back to")
    rolled_from = state["current"]
    state["current"], state["previous"] = state["previous"], rolled_from
    _history(state, "rollback", state["current"]["release"], "success",
             rolled_back_from=rolled_from and rolled_from.get("release"))  # fmt: skip
    _write_state(home, state)
    return state


# ----------------------------------------------------------------------------- SEG


def media_sop_class(path: Path) -> str | None:
    """(0002,0002) Media Storage SOP Class UID of a DICOM Part 10 file, or None."""
    data = path.read_bytes()[:65536]
    if data[128:132] != b"DICM":
        return None
    offset = 132
    while offset + 8 <= len(data):
        group, element = (
            int.from_bytes(data[offset : offset + 2], "little"),
            int.from_bytes(data[offset + 2 : offset + 4], "little"),
        )
        if group != 2:
            return None
        vr = data[offset + 4 : offset + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length = int.from_bytes(data[offset + 8 : offset + 12], "little")
            value_at = offset + 12
        else:
            length = int.from_bytes(data[offset + 6 : offset + 8], "little")
            value_at = offset + 8
        if element == 2:
            return data[value_at : value_at + length].rstrip(b"\0 ").decode("ascii", "replace")
        offset = value_at + length
    return None


def check_seg(folder: Path) -> list[Path]:
    segs = sorted(folder.rglob("vessel-seg.dcm"))
    return [seg for seg in segs if media_sop_class(seg) == SEG_SOP_CLASS]


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sitectl.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    audit = sub.add_parser("audit")
    audit.add_argument("--log", type=Path, required=True)
    audit.add_argument("--event-type", default="deploy")
    audit.add_argument("--actor", default="deploy.sh")
    audit.add_argument("--action", required=True)
    outcomes = ["success", "failure", "refused", "info"]
    audit.add_argument("--outcome", required=True, choices=outcomes)
    audit.add_argument("--resource", required=True)
    audit.add_argument("--details", default="{}")
    audit.add_argument("--code-version", default=None)
    get = sub.add_parser("get")
    get.add_argument("file", type=Path)
    get.add_argument("field")
    state = sub.add_parser("state")
    state.add_argument("op", choices=["install", "rollback", "note", "show"])
    state.add_argument("--home", type=Path, required=True)
    state.add_argument("--report", type=Path)
    state.add_argument("--image-ref")
    state.add_argument("--action")
    state.add_argument("--release", type=int)
    state.add_argument("--outcome")
    state.add_argument("--problem")
    seg = sub.add_parser("check-seg")
    seg.add_argument("folder", type=Path)
    args = parser.parse_args(argv)

    if args.command == "audit":
        details = json.loads(args.details)
        entry = append_audit(
            args.log, event_type=args.event_type, actor=args.actor, resource=args.resource,
            action=args.action, outcome=args.outcome, details=details,
            code_version=args.code_version,
        )  # fmt: skip
        print(f"audit: sequence {entry['sequence']} {args.action} {args.outcome}")
    elif args.command == "get":
        value = get_field(read_json(args.file), args.field)
        if value is not None:
            print(value if isinstance(value, (str, int)) else json.dumps(value))
    elif args.command == "check-seg":
        segs = check_seg(args.folder)
        if not segs:
            print(f"no DICOM Segmentation (vessel-seg.dcm, SOP class {SEG_SOP_CLASS}) written")
            return 1
        print("\n".join(str(seg) for seg in segs))
    elif args.op == "install":
        state_install(args.home, read_json(args.report), args.image_ref)
    elif args.op == "rollback":
        state_rollback(args.home)
    elif args.op == "note":
        current = _state(args.home)
        _history(current, args.action, args.release, args.outcome, problem=args.problem)
        _write_state(args.home, current)
    else:
        print(json.dumps(_state(args.home), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
