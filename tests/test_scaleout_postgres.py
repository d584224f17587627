"""Scaled out (issue 16): one ingest process and two worker processes on a real PostgreSQL.

Everything real and on 127.0.0.1: Debian's PostgreSQL started by the test, the ingest
tier (``python -m service serve`` with ``local_worker=false``) and two inference workers
(``python -m service worker``) with the shipped ensemble, sharing the database and one
``var_dir``; the studies pushed by dcmtk ``storescu`` from several associations at once;
the results received by dcmtk ``storescp`` writing every received object to a file of
its own (``+uf``), so a result sent twice would show as two files.

In the middle of it: a worker is killed with SIGKILL while it holds a study (its lease
in the journal names its PID), a new worker is started as a Deployment would, and the
database is stopped and started again. Then: every study processed and exported exactly
once, the killed worker's study by another worker on its second attempt, every instance
pushed counted in its job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from service.journal import Journal
from synthetic.dicom_series import WrittenSeries
from tests.peers import echoscu, free_port, require_executable, storescu
from tests.pg_support import PostgresServer, postgres  # noqa: F401 (fixture)
from tests.service_support import MODELS, make_study, wait_for

pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parents[1]
# 50 studies as the issue asks: a small CT study runs in ~0.5 s once a worker is warm
# (its first run, Holoscan's start-up, takes ~15 s), so the whole test is a few minutes.
STUDIES = 50
SENDERS = 5  # concurrent storescu associations


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


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """dcmtk storescp on 127.0.0.1: every object received lands in a new file."""
    folder = tmp_path / "received"
    folder.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [require_executable("storescp"), "-aet", "PACS", "+uf", "-od", str(folder), "+xa",
         str(port)], stdout=subprocess.DEVNULL, stderr=(tmp_path / "storescp.log").open("wb"),
    )  # fmt: skip
    try:
        wait_for(lambda: _echo(port, "PACS"), 30, "storescp listening")
        yield port, folder
    finally:
        process.terminate()
        process.wait(10)


def _echo(port: int, aet: str) -> bool:
    try:
        echoscu("127.0.0.1", port, aet, timeout=5)
        return True
    except AssertionError:
        return False


def _push(port: int, studies: list[WrittenSeries], errors: list[str]) -> None:
    for study in studies:
        try:
            storescu("127.0.0.1", port, "MINIVESS", study.files, timeout=300)
        except AssertionError as error:  # the test fails below, with the reason
            errors.append(str(error)[:2000])


def _holder_is(journal: Journal, pid: int) -> str | None:
    for job in journal.list_jobs(("processing",)):
        if job.lease_owner and job.lease_owner.split(":")[1] == str(pid):
            return job.job_id
    return None


@pytest.mark.requirement("SRS-043")
def test_gateway_and_two_workers_on_postgres_process_each_study_once(
    tmp_path: Path,
    postgres: PostgresServer,  # noqa: F811
    receiver: tuple[int, Path],
) -> None:
    started = time.monotonic()
    studies = [make_study(tmp_path / "studies" / str(n), seed=1000 + n) for n in range(STUDIES)]
    receiver_port, received = receiver
    url = postgres.schema_url("scaleout")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "MINIVESS_JOURNAL_PASSWORD").write_text(postgres.password)
    dicom_port = free_port()
    config = tmp_path / "service.json"
    config.write_text(json.dumps({
        "var_dir": str(tmp_path / "shared-var"), "dicom_port": dicom_port, "http_port": 0,
        "quiet_period_s": 1.0, "min_free_disk_bytes": 0, "model_dir": str(MODELS),
        "dev_mode": True, "journal_url": url, "job_lease_s": 5.0,
        "export_backoff_s": 0.5, "export_destinations": [
            {"host": "127.0.0.1", "port": receiver_port, "ae_title": "PACS"}],
    }))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIVESS_")}
    env |= {"PYTHONPATH": str(ROOT), "MINIVESS_SECRETS_DIR": str(secrets),
            "MINIVESS_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
            "HOLOSCAN_LOG_LEVEL": "ERROR"}  # fmt: skip
    logs = tmp_path / "logs"
    logs.mkdir()
    args = ["--config", str(config)]
    tiers = [Tier("ingest", [*args, "serve"], env | {"MINIVESS_LOCAL_WORKER": "false"}, logs)]
    try:
        tiers[0].wait_log("service ready", 120)
        for name in ("worker-a", "worker-b"):
            tiers.append(Tier(name, [*args, "worker"], env, logs))
        for tier in tiers[1:]:
            tier.wait_log("claiming jobs", 120)
        journal = Journal(url, password=postgres.password)

        errors: list[str] = []
        senders = [threading.Thread(target=_push, args=(dicom_port, studies[n::SENDERS], errors))
                   for n in range(SENDERS)]  # fmt: skip
        for sender in senders:
            sender.start()

        # Kill worker A while it holds a study (its lease names its PID), start another.
        victim = tiers[1]
        killed_job = wait_for(lambda: _holder_is(journal, victim.process.pid), 300,
                              "worker A holding a study")  # fmt: skip
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(10)
        tiers.append(Tier("worker-c", [*args, "worker"], env, logs))

        # The database goes away and comes back while studies arrive, run and export.
        wait_for(lambda: len(journal.list_jobs(("done",))) >= STUDIES // 3, 600,
                 "a third of the studies done")  # fmt: skip
        postgres.restart(down_s=2.0)

        for sender in senders:
            sender.join(600)
        assert not errors, errors[0]
        wait_for(lambda: sum(j.state in ("done", "failed", "dead_letter")
                             for j in journal.list_jobs()) >= STUDIES, 900,
                 "every study finished")  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        for tier in reversed(tiers):
            tier.stop()

    jobs = journal.list_jobs()
    by_study = Counter(job.study_uid for job in jobs)
    assert len(jobs) == STUDIES and set(by_study.values()) == {1}, by_study
    sent = {s.study_instance_uid: len(s.files) for s in studies}
    for job in jobs:
        assert (job.state, job.delivered) == ("done", [f"PACS@127.0.0.1:{receiver_port}"]), job
        assert job.instances == sent[job.study_uid], job  # every instance pushed, counted
        assert job.export_attempts == 0 and job.lease_owner is None, job
    killed = journal.get(killed_job)
    assert killed is not None and killed.attempts == 2 and killed.state == "done"
    assert sum(job.attempts for job in jobs) == STUDIES + 1  # only the killed one ran twice

    # Each result received exactly once: three objects (SEG, uncertainty map, SR) a study.
    files = [pydicom.dcmread(p, stop_before_pixels=True) for p in received.iterdir()]
    sop_uids = Counter(str(ds.SOPInstanceUID) for ds in files)
    assert set(sop_uids.values()) == {1}, [u for u, n in sop_uids.items() if n > 1]
    per_study = Counter(str(ds.StudyInstanceUID) for ds in files)
    assert per_study == {uid: 3 for uid in sent}
    ran = [t.name for t in tiers[1:] if "processing study" in t.text()]
    assert {"worker-b", "worker-c"} <= set(ran), ran  # both surviving workers took studies
    spool = tmp_path / "shared-var" / "spool"
    assert [p.name for p in spool.iterdir()] == [".tmp"]  # every study's instances released
    journal.close()
    print(f"{STUDIES} studies, {SENDERS} senders, 2 workers (+1 replacement): {elapsed:.0f} s")
