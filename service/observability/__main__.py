"""``python -m service.observability drift``: an Evidently drift report of recent studies.

Examples::

    python -m service.observability drift --store var/drift/features.jsonl \\
        --manifest models/ensemble/manifest.json --out var/drift/reports --last 50
    python -m service.observability drift --store var/drift/features.jsonl \\
        --reference-store var/drift/baseline-ct.jsonl --modality CT --out var/drift/reports

Writes ``drift-<UTC time>.html`` and ``.json`` into ``--out`` and prints a JSON summary
(drift share, drifted columns, per-feature test scores, file paths) on stdout.
Exit status: 0 when done (whether or not drift was found; ``--fail-on-drift`` makes
dataset drift exit 3), 2 on bad input with a message on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from models.manifest import EnsembleManifest
from service.observability.drift import (
    DEFAULT_DRIFT_SHARE,
    FeatureStore,
    drift_report,
    frame,
    manifest_reference,
)

EXIT_DRIFT = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service.observability")
    commands = parser.add_subparsers(dest="command", required=True)
    drift = commands.add_parser("drift", help="Evidently drift report: recent studies vs reference")
    drift.add_argument("--store", type=Path, required=True, help="feature store (JSON lines)")
    reference = drift.add_mutually_exclusive_group(required=True)
    reference.add_argument(
        "--manifest", type=Path, help="model manifest (or its folder): reference_profile"
    )
    reference.add_argument(
        "--reference-store",
        type=Path,
        help="feature store of a reference period (e.g. the site baseline)",
    )
    drift.add_argument("--out", type=Path, required=True, help="folder for the HTML + JSON")
    drift.add_argument("--last", type=int, default=None, help="only the N most recent studies")
    drift.add_argument(
        "--modality", default=None, help="only studies of this modality (CT, MR), on both sides"
    )
    drift.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_DRIFT_SHARE,
        help="share of drifted features that means dataset drift",
    )
    drift.add_argument(
        "--fail-on-drift", action="store_true", help=f"exit {EXIT_DRIFT} when the dataset drifts"
    )
    return parser


def _manifest(path: Path) -> EnsembleManifest:
    if path.is_dir():
        path = path / "manifest.json"
    return EnsembleManifest.model_validate_json(path.read_text())


def drift_command(args: argparse.Namespace) -> int:
    if args.last is not None and args.last < 1:
        raise ValueError("--last must be at least 1")
    store = FeatureStore(args.store)
    if not store.path.is_file():
        raise FileNotFoundError(f"feature store not found: {store.path}")
    current = store.rows(modality=args.modality, last=args.last)
    if store.skipped_lines:
        print(
            f"warning: skipped {store.skipped_lines} unreadable line(s) in {store.path}",
            file=sys.stderr,
        )
    if args.manifest is not None:
        manifest = _manifest(args.manifest)
        reference = manifest_reference(manifest, args.modality)
        name = f"manifest reference ({args.manifest}, {args.modality or 'all modalities'})"
        if args.modality and not manifest.reference_features:
            print(
                "warning: this manifest's profile pools all modalities; a single-modality "
                "stream is compared with the pooled reference",
                file=sys.stderr,
            )
    else:
        reference_store = FeatureStore(args.reference_store)
        if not reference_store.path.is_file():
            raise FileNotFoundError(f"reference store not found: {reference_store.path}")
        reference = frame(reference_store.rows(modality=args.modality))
        name = f"reference store ({args.reference_store})"
        if len(reference) < 2:
            raise ValueError(f"reference store has {len(reference)} matching row(s); need 2+")
    result = drift_report(frame(current), reference, args.out, args.threshold, name)
    print(json.dumps(result.summary(), indent=2))
    return EXIT_DRIFT if args.fail_on_drift and result.dataset_drift else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return drift_command(args)
    except (OSError, ValueError, ValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
