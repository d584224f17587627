"""Helpers for the notification tests (no tests here): a recording FHIR endpoint, an MLLP
listener that ACKs, and a job in ``exporting`` with a run report, without the pipeline.

Both servers bind 127.0.0.1 on a free port, run in a daemon thread of the test process,
answer from a script (a list of statuses, the last repeated) and record what they got.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hl7apy.core import Message
from hl7apy.parser import parse_message

from operators.run_report import ModelSummary, RunReport, SeriesOutcome
from service.journal import Job, Journal
from tests.service_support import make_study

START, END = b"\x0b", b"\x1c\x0d"


@pytest.fixture(scope="module", name="result_file")
def result_file_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DICOM file carrying a study's Patient ID and Accession Number, as results do."""
    return make_study(tmp_path_factory.mktemp("study"), seed=41).files[0]


@pytest.fixture(name="journal")
def journal_fixture(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal(tmp_path / "journal.sqlite3")
    yield journal
    journal.close()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FhirEndpoint:
    """What a recording FHIR server got, and the statuses it answers in turn."""

    statuses: list[int]
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def next_status(self) -> int:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


def _handler(endpoint: FhirEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            endpoint.received.append(Received(self.path, dict(self.headers.items()), body))
            status = endpoint.next_status()
            if status < 300:
                entries = json.loads(body).get("entry", [])
                answer: dict[str, Any] = {
                    "resourceType": "Bundle", "type": "transaction-response",
                    "entry": [{"response": {"status": "201 Created"}} for _ in entries],
                }  # fmt: skip
            else:
                answer = {"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "transient"}]}  # fmt: skip
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # keep the test output quiet
            return

    return Handler


@contextmanager
def fhir_endpoint(statuses: list[int]) -> Iterator[FhirEndpoint]:
    """A FHIR 'server' at ``endpoint.url`` (base URL ``/fhir``) answering ``statuses``."""
    endpoint = FhirEndpoint(list(statuses))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(endpoint))
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/fhir"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class MllpListener:
    """An MLLP receiver: records each message, answers ACKs with ``codes`` in turn."""

    codes: list[str]
    messages: list[str] = field(default_factory=list)
    port: int = 0

    def next_code(self) -> str:
        return self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]


def _ack(message: str, code: str) -> bytes:
    received = parse_message(message, find_groups=False)
    ack = Message("ACK", version="2.5")
    ack.msh.msh_3 = "RIS"
    ack.msh.msh_9 = "ACK^R01^ACK"
    ack.msh.msh_10 = "ack1"
    ack.msh.msh_11 = "P"
    ack.msa.msa_1 = code
    ack.msa.msa_2 = received.msh.msh_10.value
    return START + ack.to_er7().encode() + END


@contextmanager
def mllp_listener(codes: list[str]) -> Iterator[MllpListener]:
    listener = MllpListener(list(codes))
    server = socket.create_server(("127.0.0.1", 0))
    listener.port = int(server.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                data = b""
                while not data.endswith(END):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                text = data.removeprefix(START).removesuffix(END).decode()
                listener.messages.append(text)
                conn.sendall(_ack(text, listener.next_code()))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stop.set()
        thread.join(5)
        server.close()


def exporting_job(journal: Journal, out: Path, result_file: Path, study_uid: str) -> Job:
    """A job in ``exporting`` whose outputs are ``result_file`` and a written report.json
    (two series: one in distribution, one flagged for review)."""
    registered = journal.register_instance(study_uid, f"{study_uid}.9", out / "in.dcm", 1, now=0)
    assert registered.job_id is not None
    journal.queue_quiet_jobs(1.0)
    journal.claim_next_queued()
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat()
    report = RunReport(
        correlation_id="c1", status="done", input_path="in", input_kind="dicom",
        started_at=now, finished_at=now, timings_s={},
        model=ModelSummary(name="ens", version="1.2.3", providers=["cpu"], members={}),
        series=[
            SeriesOutcome(study_instance_uid=study_uid, series_instance_uid=f"{study_uid}.1",
                          modality="CT", status="done", vessel_volume_ml=12.5,
                          uncertainty_score=0.05, ood_threshold=0.2, out_of_distribution=False),
            SeriesOutcome(study_instance_uid=study_uid, series_instance_uid=f"{study_uid}.2",
                          modality="CT", status="done", vessel_volume_ml=3.25,
                          uncertainty_score=0.4, ood_threshold=0.2, out_of_distribution=True),
        ],
    )  # fmt: skip
    (out / "report.json").write_text(report.model_dump_json())
    return journal.mark_exporting(registered.job_id, out, [str(result_file)])
