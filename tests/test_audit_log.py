"""The audit log: hash chain, tamper detection and location, checkpoints, PHI, crashes."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compliance.audit import (
    AuditEntry,
    AuditLog,
    MissingKeyError,
    hash_identifier,
    load_private_key,
    read_checkpoints,
    record_inference,
    record_test_set_access,
    verify_chain,
    verify_log,
)
from compliance.audit.__main__ import main as audit_cli

KEY = bytes(range(32))
PATIENT_ID = "PAT-SECRET-0042"
ACCESSION = "ACC-7781-XYZ"
STUDY_UID = "1.2.826.0.1.3680043.8.498.12345678901234567890"


def _log(tmp_path: Path, **kwargs: object) -> AuditLog:
    return AuditLog(tmp_path / "audit.jsonl", hmac_key=KEY, code_version="test", **kwargs)  # type: ignore[arg-type]


def _fill(log: AuditLog, count: int) -> list[AuditEntry]:
    return [
        log.append(
            event_type="inference",
            actor="pipeline",
            resource=f"series:{i}",
            action="segment",
            details={"index": i, "score": 0.5 + i},
        )
        for i in range(count)
    ]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _errors(report: object) -> list[tuple[str, int | None, int | None]]:
    return [(f.kind, f.line, f.sequence) for f in report.findings if f.severity == "error"]  # type: ignore[attr-defined]


@pytest.mark.requirement("SRS-030")
def test_chain_of_appended_entries_verifies(tmp_path: Path) -> None:
    log = _log(tmp_path, model_version="ens-1", data_version="d1")
    entries = _fill(log, 5)
    assert [e.sequence for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))
    on_disk = [AuditEntry.model_validate_json(line) for line in _lines(log.path)]
    assert on_disk == entries
    assert on_disk[0].code_version == "test" and on_disk[0].model_version == "ens-1"
    report = verify_chain(log.path)
    assert report.ok and report.entries == 5 and not report.findings
    assert report.head_hash == entries[-1].entry_hash


@pytest.mark.requirement("SRS-030")
def test_schema_rejects_bad_fields(tmp_path: Path) -> None:
    log = _log(tmp_path)
    with pytest.raises(ValueError, match="event_type"):
        log.append(event_type="Bad Type!", actor="x", resource="r", action="a")
    assert not log.path.exists() or log.path.read_text() == ""


def _edit(lines: list[str]) -> list[str]:
    data = json.loads(lines[2])
    data["details"]["score"] = 99.0
    return [*lines[:2], json.dumps(data, sort_keys=True) + "\n", *lines[3:]]


def _rehashed_edit(lines: list[str]) -> list[str]:
    data = json.loads(lines[2])
    data["action"] = "nothing-happened"
    entry = AuditEntry.seal(**{k: v for k, v in data.items() if k != "entry_hash"})
    return [*lines[:2], entry.to_line().decode(), *lines[3:]]


def _insert_forged(lines: list[str]) -> list[str]:
    prev = json.loads(lines[1])
    forged = AuditEntry.seal(
        timestamp=prev["timestamp"],
        sequence=3,
        event_type="inference",
        actor="intruder",
        resource="series:x",
        action="segment",
        prev_hash=prev["entry_hash"],
    )
    return [*lines[:2], forged.to_line().decode(), *lines[2:]]


TAMPERING: dict[str, tuple[Callable[[list[str]], list[str]], tuple[str, int, int]]] = {
    # kind of tampering: (change to the 6 lines, (finding kind, line, sequence))
    "edited": (_edit, ("edited", 3, 3)),
    "deleted": (lambda ls: [*ls[:2], *ls[3:]], ("deleted", 3, 4)),
    "deleted-first": (lambda ls: ls[1:], ("deleted", 1, 2)),
    "reordered": (lambda ls: [*ls[:2], ls[3], ls[2], *ls[4:]], ("reordered", 3, 4)),
    "inserted": (_insert_forged, ("inserted", 3, 3)),
    "duplicated": (lambda ls: [*ls[:3], ls[2], *ls[3:]], ("inserted", 4, 3)),
    "rehashed-edit": (_rehashed_edit, ("chain", 4, 4)),
    "destroyed": (lambda ls: [*ls[:2], "garbage\n", *ls[3:]], ("unreadable", 3, None)),  # type: ignore[dict-item]
}


@pytest.mark.requirement("SRS-032")
@pytest.mark.parametrize("kind", list(TAMPERING))
def test_tampering_is_detected_and_located(tmp_path: Path, kind: str) -> None:
    log = _log(tmp_path)
    _fill(log, 6)
    change, expected = TAMPERING[kind]
    log.path.write_text("".join(change(_lines(log.path))))
    report = verify_chain(log.path)
    assert not report.ok
    assert expected in _errors(report), report.findings
    # The CLI says the same and exits 1.
    assert audit_cli(["verify", str(log.path)]) == 1


def _signed_log(tmp_path: Path, count: int) -> tuple[AuditLog, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    log = _log(tmp_path, signing_key=key)
    _fill(log, count)
    return log, key


@pytest.mark.requirement("SRS-032")
def test_truncation_and_rewrite_are_detected_against_a_checkpoint(tmp_path: Path) -> None:
    log, key = _signed_log(tmp_path, 6)
    checkpoint = log.checkpoint()
    assert (checkpoint.count, checkpoint.head_hash) == (6, verify_chain(log.path).head_hash)
    assert verify_log(log.path, [checkpoint], key.public_key()).ok

    original = log.path.read_text()
    log.path.write_text("".join(_lines(log.path)[:4]))  # chain of 4 still valid on its own
    assert verify_chain(log.path).ok
    report = verify_log(log.path, [checkpoint], key.public_key())
    assert ("truncated", None, 6) in _errors(report)
    assert "entries 5..6 are gone" in str(report.findings[0])

    # A whole rewritten chain (every hash recomputed) passes the chain check only.
    log.path.write_text("")
    for line in original.splitlines():
        data = json.loads(line)
        data["actor"] = "someone-else"
        data["prev_hash"] = verify_chain(log.path).head_hash
        log.path.write_bytes(
            log.path.read_bytes()
            + AuditEntry.seal(**{k: v for k, v in data.items() if k != "entry_hash"}).to_line()
        )
    assert verify_chain(log.path).ok
    assert ("rewritten", 6, 6) in _errors(verify_log(log.path, [checkpoint], key.public_key()))


@pytest.mark.requirement("SRS-032")
def test_checkpoint_signature_checks(tmp_path: Path) -> None:
    log, key = _signed_log(tmp_path, 3)
    checkpoint = log.checkpoint()
    wrong = Ed25519PrivateKey.generate().public_key()
    assert ("checkpoint", None, 3) in _errors(verify_log(log.path, [checkpoint], wrong))
    forged = checkpoint.model_copy(update={"count": 2})
    report = verify_log(log.path, [forged], key.public_key())
    assert any("does not verify" in f.message for f in report.findings)
    assert not verify_log(log.path, [checkpoint], None).ok  # a checkpoint needs a key


@pytest.mark.requirement("SRS-032")
def test_periodic_checkpoints_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    keys = tmp_path / "keys"
    assert (
        audit_cli(
            [
                "keygen",
                "--hmac-key",
                str(keys / "site.key"),
                "--signing-key",
                str(keys / "sign.pem"),
                "--public-key",
                str(keys / "sign.pub"),
            ]
        )
        == 0
    )
    assert (keys / "site.key").stat().st_mode & 0o777 == 0o600
    log = AuditLog(
        tmp_path / "a.jsonl",
        hmac_key=keys / "site.key",
        signing_key=load_private_key(keys / "sign.pem"),
        checkpoint_every=10,
    )
    _fill(log, 25)
    periodic = read_checkpoints(log.checkpoints_path)
    assert [c.count for c in periodic] == [10, 20]
    for i in range(2):
        assert (
            audit_cli(
                [
                    "append",
                    "--log",
                    str(log.path),
                    "--event-type",
                    "deploy",
                    "--actor",
                    "deploy.sh",
                    "--resource",
                    "release:7",
                    "--action",
                    "install",
                    "--details",
                    json.dumps({"step": i}),
                ]
            )
            == 0
        )
    export = tmp_path / "exported.json"
    assert (
        audit_cli(
            [
                "checkpoint",
                "--log",
                str(log.path),
                "--signing-key",
                str(keys / "sign.pem"),
                "--out",
                str(export),
            ]
        )
        == 0
    )
    capsys.readouterr()
    args = ["verify", str(log.path), "--public-key", str(keys / "sign.pub")]
    assert (
        audit_cli([*args, "--checkpoint", str(export), "--checkpoint", str(log.checkpoints_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "INTACT" in out and "4/4 checkpoints verified" in out
    log.path.write_text("".join(_lines(log.path)[:-1]))  # drop the last entry
    assert audit_cli([*args, "--checkpoint", str(export)]) == 1
    assert "truncated" in capsys.readouterr().out
    assert audit_cli(["verify", str(tmp_path / "absent.jsonl")]) == 2


@pytest.mark.requirement("SRS-033")
def test_torn_last_line_is_reported_and_the_next_append_continues(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _fill(log, 3)
    whole = _fill(_log(tmp_path / "other"), 4)[-1].to_line()
    with log.path.open("ab") as handle:  # a crash half-way through writing entry 4
        handle.write(whole[: len(whole) // 2])
    report = verify_chain(log.path)
    assert report.ok and report.entries == 3
    assert [(f.kind, f.line, f.severity) for f in report.findings] == [("torn", 4, "warning")]
    assert "torn last line" in report.findings[0].message

    entry = _fill(log, 1)[0]
    assert entry.sequence == 4
    lines = _lines(log.path)
    assert len(lines) == 5 and AuditEntry.model_validate_json(lines[4]) == entry
    report = verify_chain(log.path)
    assert report.ok and report.entries == 4 and report.head_hash == entry.entry_hash
    assert [(f.kind, f.line) for f in report.findings] == [("torn", 4)]


@pytest.mark.requirement("SRS-033")
def test_a_line_cut_just_before_its_newline_counts_as_written(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _fill(log, 2)
    log.path.write_bytes(log.path.read_bytes()[:-1])
    assert _fill(log, 1)[0].sequence == 3
    assert verify_chain(log.path).ok


@pytest.mark.requirement("SRS-031")
def test_identifiers_are_never_in_clear(tmp_path: Path) -> None:
    log = _log(tmp_path)
    log.append(
        event_type="study.received",
        actor="gateway",
        action="receive",
        resource="study:" + log.hash_identifier(STUDY_UID),
        identifiers={"patient_id": PATIENT_ID, "accession": ACCESSION},
        details={
            "PatientID": PATIENT_ID,
            "nested": {"StudyInstanceUID": STUDY_UID},
            "sop_instance_uids": [STUDY_UID + ".1"],
            "instances": 3,
        },
    )
    text = log.path.read_text()
    for secret in (PATIENT_ID, ACCESSION, STUDY_UID, "Doe"):
        assert secret not in text
    entry = AuditEntry.model_validate_json(text)
    hashed = hash_identifier(PATIENT_ID, KEY)
    assert entry.details["identifiers"]["patient_id"] == hashed == entry.details["PatientID"]
    assert entry.details["instances"] == 3
    assert hashed != hash_identifier(PATIENT_ID, bytes(32))  # keyed: another site differs
    assert hash_identifier(hashed, KEY) == hashed  # hashing twice is harmless


@pytest.mark.requirement("SRS-031")
def test_no_key_means_no_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINIVESS_AUDIT_HMAC_KEY_FILE", raising=False)
    log = AuditLog(tmp_path / "a.jsonl", code_version="test")
    with pytest.raises(MissingKeyError):
        log.append(
            event_type="x", actor="a", resource="r", action="a", details={"patient_id": PATIENT_ID}
        )
    with pytest.raises(MissingKeyError):
        log.append(
            event_type="x",
            actor="a",
            resource="r",
            action="a",
            identifiers={"accession": ACCESSION},
        )
    assert not log.path.exists()
    log.append(event_type="x", actor="a", resource="r", action="a", details={"n": 1})
    assert verify_chain(log.path).ok


@pytest.mark.requirement("SRS-034")
def test_test_set_access_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIVESS_AUDIT_LOG", str(tmp_path / "site.jsonl"))
    granted = record_test_set_access(
        tmp_path / "test", expected_sha256="a" * 64, actual_sha256="a" * 64, purpose="evaluation"
    )
    refused = record_test_set_access(
        tmp_path / "test", expected_sha256="a" * 64, actual_sha256="b" * 64
    )
    missing = record_test_set_access(tmp_path / "test", expected_sha256=None, actual_sha256="c")
    assert [e.outcome for e in (granted, refused, missing)] == ["success", "refused", "refused"]
    assert [e.details["hash_check"] for e in (granted, refused, missing)] == [
        "match",
        "mismatch",
        "missing",
    ]
    assert granted.details["purpose"] == "evaluation" and granted.event_type == "testset.access"
    assert verify_chain(tmp_path / "site.jsonl").entries == 3


@pytest.mark.requirement("SRS-031", "SRS-030", "SRS-091")
def test_inference_record_from_a_run_report(tmp_path: Path) -> None:
    seg = tmp_path / f"seg-{STUDY_UID}.dcm"
    seg.write_bytes(b"DICM")
    report = {
        "correlation_id": "trace-1",
        "input_kind": "dicom",
        "model": {
            "name": "ens",
            "version": "1.0",
            "providers": ["CPUExecutionProvider"],
            "members": {"unet-a": "f" * 64},
        },
        "series": [
            {
                "study_instance_uid": STUDY_UID,
                "series_instance_uid": STUDY_UID + ".2",
                "status": "done",
                "modality": "CT",
                "outputs": {"seg": str(seg)},
                "uncertainty_score": float("nan"),
                "out_of_distribution": True,
            }
        ],
    }
    log = _log(tmp_path)
    (entry,) = record_inference(report, log)
    assert entry.model_version == "1.0" and entry.correlation_id == "trace-1"
    assert entry.details["out_of_distribution"] is True
    assert entry.details["outputs_sha256"]["seg"] is not None
    assert entry.details["uncertainty_score"] == "nan"
    assert STUDY_UID not in log.path.read_text()
    assert verify_chain(log.path).ok
    # A build tracked in MLflow (issue 17): the entry's model version names its run(s).
    report["model"]["mlflow_runs"] = ["3f2a" * 8]
    (tracked,) = record_inference(report, log)
    assert tracked.model_version == f"1.0 (MLflow run {'3f2a' * 8})"
    report["model"]["mlflow_runs"] = ["a1", "b2"]
    assert record_inference(report, log)[0].model_version == "1.0 (MLflow runs a1, b2)"
