"""The journal's leases and claims on both backends (SQLite file, real PostgreSQL).

Several Journal objects on one store stand for several processes (each has its own lease
owner): a job is claimed by one of them at a time, a dead holder's job is taken again
once its lease expires, only the holder records a result, and a PostgreSQL restart in
the middle costs no committed row.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from service.journal import IllegalTransitionError, Journal
from service.journal_db import open_database
from tests.peers import free_port
from tests.pg_support import (  # noqa: F401 (fixtures)
    OpenJournal,
    PostgresServer,
    open_journal,
    postgres,
)

OUT = Path("/out")


def queued(journal: Journal, studies: int, now: float = 100.0) -> list[str]:
    ids = []
    for n in range(studies):
        registered = journal.register_instance(f"1.2.{n}", f"1.2.{n}.1", Path("/s"), 1, now=now + n)
        ids.append(registered.job_id or "")
    journal.queue_quiet_jobs(cutoff=now + studies)
    return ids


@pytest.mark.requirement("SRS-090")
def test_an_expired_lease_passes_the_job_on_and_only_the_holder_keeps_a_result(
    open_journal: OpenJournal,  # noqa: F811
) -> None:
    first, second = open_journal(lease_s=0.5), open_journal(lease_s=0.5)
    (job_id,) = queued(first, 1)
    claimed = first.claim_next_queued()
    assert claimed is not None and claimed.lease_owner == first.owner
    assert second.claim_next_queued() is None  # held
    assert first.renew_lease(job_id)
    time.sleep(0.7)  # the first worker "died": no renewal
    taken = second.claim_next_queued()
    assert taken is not None and (taken.job_id, taken.attempts) == (job_id, 2)
    assert taken.lease_owner == second.owner
    assert not first.renew_lease(job_id)
    with pytest.raises(IllegalTransitionError, match="lease passed"):
        first.mark_exporting(job_id, OUT, ["/out/a.dcm"])
    with pytest.raises(IllegalTransitionError, match="lease passed"):
        first.mark_failed(job_id, "x", "x", OUT)
    done = second.mark_exporting(job_id, OUT, ["/out/b.dcm"])
    assert (done.state, done.outputs, done.lease_owner) == ("exporting", ["/out/b.dcm"], None)


def test_concurrent_claims_take_each_job_once(open_journal: OpenJournal) -> None:  # noqa: F811
    ids = queued(open_journal(), 24)
    workers = [open_journal() for _ in range(4)]
    taken: dict[str, list[str]] = {w.owner: [] for w in workers}

    def work(journal: Journal) -> None:
        while (job := journal.claim_next_queued()) is not None:
            taken[journal.owner].append(job.job_id)
            journal.mark_exporting(job.job_id, OUT, ["/out/x.dcm"])

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    claims = [job for jobs in taken.values() for job in jobs]
    assert sorted(claims) == sorted(ids)  # every job once, none twice
    assert {j.state for j in workers[0].list_jobs()} == {"exporting"}


def test_an_export_is_leased_to_one_exporter(open_journal: OpenJournal) -> None:  # noqa: F811
    first, second = open_journal(lease_s=0.5), open_journal(lease_s=0.5)
    (job_id,) = queued(first, 1)
    first.claim_next_queued()
    first.mark_exporting(job_id, OUT, ["/out/a.dcm"], due=0.0)
    job, _ = first.next_export(time.time())
    assert job is not None and job.job_id == job_id
    assert second.next_export(time.time()) == (None, None)  # in flight elsewhere
    time.sleep(0.7)  # the first exporter died mid-send
    again, _ = second.next_export(time.time())
    assert again is not None and again.job_id == job_id
    later = second.retry_export_later(job_id, 1, time.time() + 100, [], "refused")
    assert later.lease_owner is None  # the attempt's outcome ends the lease
    assert first.next_export(time.time())[0] is None


def test_resume_requeues_runs_only_on_a_single_host(open_journal: OpenJournal) -> None:  # noqa: F811
    journal = open_journal()
    (job_id,) = queued(journal, 1)
    journal.claim_next_queued()
    restarted = open_journal()
    exclusive = restarted._db.exclusive
    state = {j.job_id: j.state for j in restarted.resume()}[job_id]
    # SQLite: one process owns the file, so its run died with it. PostgreSQL: another
    # worker may be running it; its lease decides.
    assert state == ("queued" if exclusive else "processing")


def test_a_database_restart_loses_nothing(postgres: PostgresServer) -> None:  # noqa: F811
    url, password = postgres.schema_url("restart"), postgres.password
    journal = Journal(url, password=password)
    before = [journal.register_instance("1.9", f"1.9.{n}", Path("/s"), 1).job_id for n in range(5)]
    postgres.restart(down_s=1.0)
    # The next transaction finds its connection gone, reconnects and runs.
    after = journal.register_instance("1.9", "1.9.99", Path("/s"), 1)
    assert after.job_id == before[0] and not after.new_job
    job = journal.get(after.job_id or "")
    assert job is not None and job.instances == 6
    journal.close()


def test_a_password_in_the_url_is_refused() -> None:
    with pytest.raises(ValueError, match="MINIVESS_JOURNAL_PASSWORD"):
        open_database("postgresql://minivess:secret@127.0.0.1:5/db")
    with pytest.raises(ValueError, match="unsupported URL scheme in mysql://"):
        open_database("mysql://127.0.0.1/db")


def test_the_journal_settings(tmp_path: Path) -> None:
    from service.settings import SettingsError, load_settings

    default = load_settings(environ={}, var_dir=tmp_path)
    assert default.journal_target == tmp_path / "journal.sqlite3" and default.local_worker
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "MINIVESS_JOURNAL_PASSWORD").write_text("s3cret\n")
    scaled = load_settings(environ={"MINIVESS_SECRETS_DIR": str(secrets),
                                    "MINIVESS_JOURNAL_URL": "postgresql://mv@db:5432/minivess",
                                    "MINIVESS_LOCAL_WORKER": "false"})  # fmt: skip
    assert scaled.journal_target == "postgresql://mv@db:5432/minivess" and not scaled.local_worker
    assert scaled.journal_password is not None
    assert scaled.journal_password.get_secret_value() == "s3cret"  # newline dropped
    with pytest.raises(SettingsError, match="must not carry a password"):
        load_settings(environ={"MINIVESS_JOURNAL_URL": "postgresql://mv:pw@db/minivess"})
    with pytest.raises(SettingsError, match="must be a postgresql:// URL"):
        load_settings(environ={"MINIVESS_JOURNAL_URL": "sqlite:///tmp/j"})
    with pytest.raises(SettingsError, match="job_lease_s"):
        load_settings(
            environ={"MINIVESS_JOURNAL_URL": "postgresql://db/x", "MINIVESS_JOB_LEASE_S": "1"}
        )


def test_a_wrong_password_fails_at_once_an_absent_server_after_waiting(
    postgres: PostgresServer,  # noqa: F811
) -> None:
    from service.journal_pg import JournalUnavailableError, PostgresDatabase

    started = time.monotonic()
    with pytest.raises(JournalUnavailableError, match=r"refused: .*password authentication"):
        PostgresDatabase(postgres.url, "wrong", reconnect_s=30)
    assert time.monotonic() - started < 10
    absent = f"postgresql://minivess@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(JournalUnavailableError, match="unreachable for 2 s"):
        PostgresDatabase(absent, "x", reconnect_s=2)
