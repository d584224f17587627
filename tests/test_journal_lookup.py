"""The journal's indexed lookup of a study's unfinished job (what an HTTP duplicate joins)."""

from __future__ import annotations

from pathlib import Path

from service.journal import Journal

STUDY = "1.2.3.4"


def test_unfinished_job_of_is_the_newest_of_the_study(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    assert journal.unfinished_job_of(STUDY) is None
    first = journal.register_instance(STUDY, "1.1", tmp_path / "a", 1, now=100.0).job_id
    journal.register_instance("9.9", "9.9.1", tmp_path / "z", 1, now=300.0)  # another study
    assert journal.unfinished_job_of(STUDY) == first
    journal.queue_quiet_jobs(cutoff=100.5)
    claimed = journal.claim_next_queued()
    assert claimed is not None and claimed.job_id == first
    assert journal.unfinished_job_of(STUDY) == first  # processing is unfinished too
    second = journal.register_instance(STUDY, "1.2", tmp_path / "b", 1, now=102.0).job_id
    assert second != first and journal.unfinished_job_of(STUDY) == second  # the newest
    journal.mark_failed(first or "", "x", "x", tmp_path)
    journal.queue_quiet_jobs(cutoff=200.0)
    journal.claim_next_queued()
    journal.mark_failed(second or "", "x", "x", tmp_path)
    assert journal.unfinished_job_of(STUDY) is None  # every job of the study finished
    journal.close()


def test_unfinished_job_of_uses_the_study_index(tmp_path: Path) -> None:
    """One index search, not a scan of the jobs table (it grows with every study)."""
    journal = Journal(tmp_path / "j.sqlite3")
    for number in range(50):
        journal.register_instance(f"1.2.{number}", f"1.2.{number}.1", tmp_path / "x", 1)
    rows = journal._rows(
        "EXPLAIN QUERY PLAN SELECT job_id FROM jobs WHERE study_uid=? AND state IN "
        "('received','queued','processing','exporting') ORDER BY created_at DESC LIMIT 1",
        ("1.2.7",),
    )
    plan = " ".join(str(row["detail"]) for row in rows)
    assert "USING INDEX jobs_study_created (study_uid=?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # no sort: the index is in created_at order
    assert journal.unfinished_job_of("1.2.7") is not None
    journal.close()


def test_an_old_journal_gets_the_new_index(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    journal = Journal(path)
    names = {r["name"] for r in journal._rows("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "jobs_study_created" in names and "jobs_study" not in names
    journal.close()
