"""Many writers, one chain: threads and processes appending to the same audit log."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from pathlib import Path

import pytest

from compliance.audit import AuditEntry, AuditLog, verify_chain

KEY = bytes(range(32))


def _write(path: str, writer: str, count: int) -> None:
    log = AuditLog(path, hmac_key=KEY, code_version="test")
    for i in range(count):
        log.append(
            event_type="study.received",
            actor=writer,
            resource=f"study:{i}",
            action="receive",
            identifiers={"patient_id": f"{writer}-patient-{i}"},
            details={"i": i},
        )


def _check(path: Path, writers: dict[str, int]) -> None:
    report = verify_chain(path)
    assert report.ok and not report.findings, report.findings
    total = sum(writers.values())
    assert report.entries == report.head_sequence == total
    entries = [AuditEntry.model_validate_json(line) for line in path.read_text().splitlines()]
    assert [e.sequence for e in entries] == list(range(1, total + 1))
    assert Counter(e.actor for e in entries) == writers
    for writer in writers:  # each writer's entries are all there, in its own order
        assert [e.details["i"] for e in entries if e.actor == writer] == list(
            range(writers[writer])
        )


@pytest.mark.requirement("SRS-033")
def test_threads_share_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    shared = AuditLog(path, hmac_key=KEY, code_version="test")

    def shared_writer(name: str) -> None:
        for i in range(50):
            shared.append(event_type="x", actor=name, resource="r", action="a", details={"i": i})

    threads = [threading.Thread(target=_write, args=(str(path), f"own-{k}", 50)) for k in range(4)]
    threads += [threading.Thread(target=shared_writer, args=(f"shared-{k}",)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _check(path, {f"own-{k}": 50 for k in range(4)} | {f"shared-{k}": 50 for k in range(4)})


@pytest.mark.requirement("SRS-033")
def test_processes_share_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_write, args=(str(path), f"proc-{k}", 50)) for k in range(4)
    ]
    for process in processes:
        process.start()
    _write(str(path), "parent", 50)  # and the parent at the same time
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    _check(path, {f"proc-{k}": 50 for k in range(4)} | {"parent": 50})
    assert "patient-" not in path.read_text()
