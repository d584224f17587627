"""Running the scaled-out tiers as processes (no tests here): tests/test_scaleout_postgres.py
and benchmarks/scaleout_benchmark.py start an ingest process and worker processes on one
PostgreSQL journal and one shared ``var_dir``, with a dcmtk storescp as the PACS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from synthetic.dicom_series import WrittenSeries
from tests.peers import echoscu, free_port, require_executable, storescu
from tests.pg_support import PostgresServer
from tests.service_support import MODELS, wait_for

ROOT = Path(__file__).resolve().parents[1]


def scaled_config(
    folder: Path, postgres: PostgresServer, url: str, dicom_port: int, receiver_port: int,
    **settings: Any,
) -> tuple[Path, dict[str, str]]:  # fmt: skip
    """A service config file for both tiers (journal_url, shared var_dir, storescp as the
    destination) and the environment of their processes (the journal password a secret
    file, as in a pod)."""
    secrets = folder / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "MINIVESS_JOURNAL_PASSWORD").write_text(postgres.password)
    config = folder / "service.json"
    config.write_text(json.dumps({
        "var_dir": str(folder / "shared-var"), "dicom_port": dicom_port, "http_port": 0,
        "quiet_period_s": 1.0, "min_free_disk_bytes": 0, "model_dir": str(MODELS),
        "dev_mode": True, "journal_url": url, "export_backoff_s": 0.5,
        "export_destinations": [{"host": "127.0.0.1", "port": receiver_port, "ae_title": "PACS"}],
        **settings,
    }))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIVESS_")}
    env |= {"PYTHONPATH": str(ROOT), "MINIVESS_SECRETS_DIR": str(secrets),
            "MINIVESS_AUDIT_LOG": str(folder / "audit.jsonl"),
            "HOLOSCAN_LOG_LEVEL": "ERROR"}  # fmt: skip
    return config, env


class Tier:
    """One ``python -m service`` process of ours (stopped, or killed, by its PID)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.log = name, logs / f"{name}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", *args], cwd=ROOT, env=env,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, words: str, timeout: float) -> None:
        def seen() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited {self.process.returncode}:\n{self.text()[-3000:]}"
                )
            return words in self.text()

        wait_for(seen, timeout, f"{self.name}: {words!r}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextmanager
def storescp_receiver(folder: Path) -> Iterator[tuple[int, Path]]:
    """dcmtk storescp on 127.0.0.1 (AE PACS): every object received lands in a new file
    (``+uf``), so an object sent twice shows as two files."""
    received = folder / "received"
    received.mkdir(parents=True)
    port = free_port()
    with (folder / "storescp.log").open("wb") as log:
        process = subprocess.Popen(
            [require_executable("storescp"), "-aet", "PACS", "+uf", "-od", str(received), "+xa",
             str(port)], stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:
        wait_for(lambda: _echo(port, "PACS"), 30, "storescp listening")
        yield port, received
    finally:
        process.terminate()
        process.wait(10)


def _echo(port: int, aet: str) -> bool:
    try:
        echoscu("127.0.0.1", port, aet, timeout=5)
        return True
    except AssertionError:
        return False


def push_concurrently(
    port: int, studies: list[WrittenSeries], senders: int
) -> tuple[list[threading.Thread], list[str]]:
    """Start ``senders`` threads, each pushing its share of ``studies`` with storescu (one
    association a study); the threads and the list their errors go to."""
    errors: list[str] = []

    def push(share: list[WrittenSeries]) -> None:
        for study in share:
            try:
                storescu("127.0.0.1", port, "MINIVESS", study.files, timeout=300)
            except AssertionError as error:
                errors.append(str(error)[:2000])

    threads = [threading.Thread(target=push, args=(studies[n::senders],)) for n in range(senders)]
    for thread in threads:
        thread.start()
    return threads, errors
