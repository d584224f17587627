"""``python -m compliance.audit``: keys, appends from shell, checkpoints, verification.

    keygen --hmac-key FILE | --signing-key FILE --public-key FILE
    append --log LOG --event-type T --actor A --resource R --action X [--outcome O]
           [--details JSON] [--hmac-key FILE]
    checkpoint --log LOG --signing-key FILE [--out FILE]
    verify LOG [--checkpoint FILE ...] [--public-key FILE] [--json]

``verify`` exits 0 when the log is intact (warnings, such as a torn last line, are
printed), 1 when it found tampering, 2 on a usage or I/O error.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from compliance.audit.checkpoint import (
    CheckpointError,
    generate_signing_key,
    load_private_key,
    load_public_key,
    read_checkpoints,
)
from compliance.audit.identifiers import generate_hmac_key
from compliance.audit.log import AuditLog
from compliance.audit.verify import verify_log


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compliance.audit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    keygen = sub.add_parser("keygen", help="create the site HMAC key and/or a signing key pair")
    keygen.add_argument("--hmac-key", type=Path, help="write a new HMAC site key here")
    keygen.add_argument("--signing-key", type=Path, help="write a new Ed25519 private key here")
    keygen.add_argument("--public-key", type=Path, help="and its public key here")

    append = sub.add_parser("append", help="append one entry (for shell scripts: deploy.sh)")
    append.add_argument("--log", type=Path, required=True)
    append.add_argument("--event-type", required=True)
    append.add_argument("--actor", required=True)
    append.add_argument("--resource", required=True)
    append.add_argument("--action", required=True)
    append.add_argument(
        "--outcome", default="success", choices=["success", "failure", "refused", "info"]
    )
    append.add_argument("--details", default="{}", help="a JSON object")
    append.add_argument("--correlation-id")
    append.add_argument("--model-version")
    append.add_argument("--hmac-key", type=Path, help="site key (needed for identifiers)")

    checkpoint = sub.add_parser("checkpoint", help="sign the current head of a log")
    checkpoint.add_argument("--log", type=Path, required=True)
    checkpoint.add_argument("--signing-key", type=Path, required=True)
    checkpoint.add_argument("--out", type=Path, help="also export it to this JSON file")

    verify = sub.add_parser("verify", help="verify the chain and checkpoints of a log")
    verify.add_argument("log", type=Path)
    verify.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="exported checkpoint JSON (or a .checkpoints file); repeatable",
    )
    verify.add_argument("--public-key", type=Path, help="Ed25519 public key (PEM)")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _keygen(args: argparse.Namespace) -> int:
    if not (args.hmac_key or args.signing_key):
        print("keygen: give --hmac-key and/or --signing-key/--public-key", file=sys.stderr)
        return 2
    if args.hmac_key:
        generate_hmac_key(args.hmac_key)
        print(f"HMAC site key written to {args.hmac_key} (mode 0600)")
    if args.signing_key:
        if not args.public_key:
            print("keygen: --signing-key needs --public-key", file=sys.stderr)
            return 2
        kid = generate_signing_key(args.signing_key, args.public_key)
        print(f"Ed25519 key {kid}: private {args.signing_key}, public {args.public_key}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    if not args.log.is_file():
        print(f"verify: {args.log}: no such file", file=sys.stderr)
        return 2
    checkpoints = [cp for path in args.checkpoint for cp in read_checkpoints(path)]
    public_key = load_public_key(args.public_key) if args.public_key else None
    report = verify_log(args.log, checkpoints, public_key)
    if args.json:
        payload = {k: v for k, v in asdict(report).items()}
        payload["ok"] = report.ok
        print(json.dumps(payload, indent=2))
    else:
        for finding in report.findings:
            print(finding)
        state = "INTACT" if report.ok else "TAMPERED"
        print(
            f"{state}: {args.log}: {report.entries} entries, head sequence "
            f"{report.head_sequence} ({report.head_hash[:16]}…), "
            f"{report.checkpoints_verified}/{len(checkpoints)} checkpoints verified"
        )
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "keygen":
            return _keygen(args)
        if args.command == "append":
            details = json.loads(args.details)
            if not isinstance(details, dict):
                raise ValueError("--details must be a JSON object")
            entry = AuditLog(args.log, hmac_key=args.hmac_key).append(
                event_type=args.event_type,
                actor=args.actor,
                resource=args.resource,
                action=args.action,
                outcome=args.outcome,
                details=details,
                correlation_id=args.correlation_id,
                model_version=args.model_version,
            )
            print(f"appended sequence {entry.sequence} {entry.entry_hash}")
            return 0
        if args.command == "checkpoint":
            log = AuditLog(args.log, signing_key=load_private_key(args.signing_key))
            checkpoint = log.checkpoint()
            if args.out:
                args.out.write_text(checkpoint.model_dump_json(indent=2) + "\n")
            print(checkpoint.model_dump_json(indent=2))
            return 0
        return _verify(args)
    except (OSError, ValueError, CheckpointError) as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
