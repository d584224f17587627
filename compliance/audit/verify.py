"""Verify an audit log: the hash chain, the sequence, and signed checkpoints.

Findings name the line (1-based) and the entry's sequence number. Kinds:
``edited`` (an entry's content no longer matches its hash), ``deleted`` (entries
missing from the chain), ``inserted`` (lines that are not part of the chain),
``reordered``, ``chain`` (any other break), ``unreadable``, ``torn`` (a write
interrupted by a crash: a warning, the chain shows no committed entry was lost),
``truncated`` and ``rewritten`` (against a checkpoint), ``checkpoint`` (bad signature).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from compliance.audit.checkpoint import Checkpoint, CheckpointError
from compliance.audit.schema import GENESIS_HASH, AuditEntry, compute_entry_hash


@dataclass(frozen=True)
class Finding:
    severity: Literal["error", "warning"]
    kind: str
    line: int | None
    sequence: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "log"
        if self.sequence is not None:
            where += f" (sequence {self.sequence})"
        return f"{self.severity.upper()} {self.kind}: {where}: {self.message}"


@dataclass
class VerifyReport:
    path: str
    entries: int = 0
    head_sequence: int = 0
    head_hash: str = GENESIS_HASH
    checkpoints_verified: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def error(self, kind: str, line: int | None, sequence: int | None, message: str) -> None:
        self.findings.append(Finding("error", kind, line, sequence, message))

    def warn(self, kind: str, line: int | None, sequence: int | None, message: str) -> None:
        self.findings.append(Finding("warning", kind, line, sequence, message))


@dataclass
class _Line:
    number: int
    entry: AuditEntry | None = None
    hash_ok: bool = True
    problem: str = ""


def _parse_lines(data: bytes, report: VerifyReport) -> list[_Line]:
    raw_lines = data.split(b"\n")
    final_torn = bool(data) and not data.endswith(b"\n")
    if not final_torn:
        raw_lines = raw_lines[:-1]
    lines: list[_Line] = []
    for number, raw in enumerate(raw_lines, start=1):
        line = _Line(number)
        lines.append(line)
        try:
            obj: Any = json.loads(raw)
        except ValueError:
            line.problem = "torn"
            continue
        try:
            line.entry = AuditEntry.model_validate(obj)
        except ValidationError as exc:
            line.problem = "schema"
            report.error("unreadable", number, None, f"not a valid audit entry: {exc}")
            continue
        line.hash_ok = compute_entry_hash(obj) == line.entry.entry_hash
    return lines


def verify_chain(path: Path | str) -> VerifyReport:
    """Walk the chain of ``path`` and report every break, located by line and sequence."""
    data = Path(path).read_bytes()
    report = VerifyReport(str(path))
    lines = _parse_lines(data, report)
    by_hash: dict[str, _Line] = {}
    by_sequence: dict[int, _Line] = {}
    for line in lines:
        if line.entry is not None:
            by_hash.setdefault(line.entry.entry_hash, line)
            by_sequence.setdefault(line.entry.sequence, line)
    prev_line, prev_seq, prev_hash = 0, 0, GENESIS_HASH
    pending: list[_Line] = []  # unreadable lines since the last entry
    reported: set[int] = set()
    for line in lines:
        entry = line.entry
        if entry is None:
            if line.problem == "torn":
                pending.append(line)
            continue
        seq, number = entry.sequence, line.number
        report.entries += 1
        if not line.hash_ok:
            report.error("edited", number, seq, "content does not match its entry_hash (edited)")
        first = by_hash.get(entry.entry_hash)
        if first is not None and first.number < number:
            report.error("inserted", number, seq, f"copy of the entry at line {first.number}")
        elif entry.prev_hash == prev_hash:
            for junk in pending:
                report.warn(
                    "torn",
                    junk.number,
                    None,
                    "incomplete line from an interrupted "
                    "append; the next entry chains past it, no entry lost",
                )
            if seq != prev_seq + 1:
                report.error("chain", number, seq, f"sequence should be {prev_seq + 1}")
        elif number in reported or _predecessor_line(entry, by_hash) in reported:
            pass  # already explained by a reordering finding
        else:
            _explain_break(
                report, line, prev_line, prev_seq, pending, by_hash, by_sequence, reported
            )
        pending = []
        prev_line, prev_seq, prev_hash = number, seq, entry.entry_hash
    for junk in pending:
        is_last = junk.number == len(lines) and bool(data) and not data.endswith(b"\n")
        report.warn(
            "torn",
            junk.number,
            None,
            (
                "torn last line (a write interrupted by a crash); "
                if is_last
                else "unreadable line after the last entry; "
            )
            + f"entries up to sequence {prev_seq} verified",
        )
    report.head_sequence, report.head_hash = prev_seq, prev_hash
    return report


def _predecessor_line(entry: AuditEntry, by_hash: dict[str, _Line]) -> int:
    found = by_hash.get(entry.prev_hash)
    return found.number if found else -1


def _explain_break(
    report: VerifyReport,
    line: _Line,
    prev_line: int,
    prev_seq: int,
    pending: list[_Line],
    by_hash: dict[str, _Line],
    by_sequence: dict[int, _Line],
    reported: set[int],
) -> None:
    assert line.entry is not None
    seq, number = line.entry.sequence, line.number
    expected = prev_seq + 1
    predecessor = by_hash.get(line.entry.prev_hash)
    pred_number = (
        0 if line.entry.prev_hash == GENESIS_HASH else (predecessor.number if predecessor else None)
    )
    moved = by_sequence.get(expected)
    if seq > expected and moved is not None and moved.number > number:
        report.error(
            "reordered",
            number,
            seq,
            f"sequence {expected} should come first; it "
            f"is at line {moved.number} (entries reordered)",
        )
        reported.update({number, moved.number})
    elif pred_number is not None and pred_number < prev_line:
        report.error(
            "inserted",
            prev_line,
            prev_seq,
            f"lines {pred_number + 1}..{prev_line} "
            f"are not in the chain: line {number} (sequence {seq}) follows line "
            f"{pred_number} directly (inserted entries)",
        )
    elif pred_number is None and pending:
        for junk in pending:
            report.error(
                "unreadable",
                junk.number,
                None,
                "unreadable line where an entry "
                f"(sequence {expected}) was expected: entry destroyed",
            )
    elif pred_number is None and seq > expected:
        report.error(
            "deleted",
            number,
            seq,
            f"entries with sequence {expected}..{seq - 1} are missing before this line (deleted)",
        )
    else:
        report.error(
            "chain",
            number,
            seq,
            "prev_hash does not match the preceding entry "
            f"(line {prev_line}): the chain is broken here",
        )


def verify_log(
    path: Path | str,
    checkpoints: list[Checkpoint] | None = None,
    public_key: Any | None = None,
) -> VerifyReport:
    """The chain, then each checkpoint: signature (with ``public_key``), count, head hash."""
    report = verify_chain(path)
    if not checkpoints:
        return report
    entries = _entries_by_sequence(Path(path))
    for checkpoint in checkpoints:
        if public_key is None:
            report.error("checkpoint", None, None, "checkpoints need --public-key to verify")
            break
        try:
            checkpoint.verify(public_key)
        except CheckpointError as exc:
            report.error("checkpoint", None, checkpoint.count, f"{exc} ({checkpoint.timestamp})")
            continue
        if checkpoint.count > report.head_sequence:
            report.error(
                "truncated",
                None,
                checkpoint.count,
                f"log ends at sequence "
                f"{report.head_sequence} but a checkpoint of {checkpoint.timestamp} "
                f"signed {checkpoint.count} entries: entries "
                f"{report.head_sequence + 1}..{checkpoint.count} are gone (truncated)",
            )
            continue
        if checkpoint.count == 0:
            report.checkpoints_verified += 1
            continue
        found = entries.get(checkpoint.count)
        if found is None or found[1] != checkpoint.head_hash:
            where = found[0] if found else None
            report.error(
                "rewritten",
                where,
                checkpoint.count,
                "entry does not have the head "
                f"hash signed at {checkpoint.timestamp}: the log up to it was rewritten",
            )
            continue
        report.checkpoints_verified += 1
    return report


def _entries_by_sequence(path: Path) -> dict[int, tuple[int, str]]:
    result: dict[int, tuple[int, str]] = {}
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            entry = AuditEntry.model_validate_json(raw)
        except ValueError:
            continue
        result.setdefault(entry.sequence, (number, entry.entry_hash))
    return result
