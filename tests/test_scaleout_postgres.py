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

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from service.journal import Journal
from tests.peers import free_port
from tests.pg_support import PostgresServer, postgres  # noqa: F401 (fixture)
from tests.scaleout_support import Tier, push_concurrently, scaled_config, storescp_receiver
from tests.service_support import make_study, wait_for

pytestmark = pytest.mark.peer

# 50 studies as the issue asks: a small CT study runs in ~0.5 s once a worker is warm
# (its first run, Holoscan's start-up, takes ~15 s), so the whole test is a few minutes.
STUDIES = 50
SENDERS = 5  # concurrent storescu associations


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    with storescp_receiver(tmp_path / "pacs") as found:
        yield found


def _holder_is(journal: Journal, pid: int) -> str | None:
    for job in journal.list_jobs(("processing",)):
        if job.lease_owner and job.lease_owner.split(":")[1] == str(pid):
            return job.job_id
    return None


@pytest.mark.requirement("SRS-043", "SRS-090")
def test_gateway_and_two_workers_on_postgres_process_each_study_once(
    tmp_path: Path,
    postgres: PostgresServer,  # noqa: F811
    receiver: tuple[int, Path],
) -> None:
    started = time.monotonic()
    studies = [make_study(tmp_path / "studies" / str(n), seed=1000 + n) for n in range(STUDIES)]
    receiver_port, received = receiver
    url = postgres.schema_url("scaleout")
    dicom_port = free_port()
    config, env = scaled_config(tmp_path, postgres, url, dicom_port, receiver_port,
                                job_lease_s=5.0)  # fmt: skip
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

        senders, errors = push_concurrently(dicom_port, studies, SENDERS)

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
