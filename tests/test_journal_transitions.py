"""The journal's job state machine: every legal transition, and illegal ones refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from service.journal import TRANSITIONS, IllegalTransitionError, Job, Journal
from tests.pg_support import OpenJournal, open_journal, postgres  # noqa: F401 (fixtures)

STUDY = "1.2.3.4"
OUT = Path("/out")


@pytest.fixture
def journal(open_journal: OpenJournal) -> Journal:  # noqa: F811 (the fixture)
    """Each test runs on both backends: a SQLite file and a PostgreSQL schema."""
    return open_journal()


def received(journal: Journal, sop: str = "1.1") -> str:
    return journal.register_instance(STUDY, sop, Path("/spool") / sop, 1, now=100.0).job_id or ""


def processing(journal: Journal) -> str:
    job_id = received(journal)
    journal.queue_quiet_jobs(cutoff=200.0)
    claimed = journal.claim_next_queued()
    assert claimed is not None and claimed.job_id == job_id
    return job_id


def exporting(journal: Journal) -> str:
    job_id = processing(journal)
    journal.mark_exporting(job_id, OUT, ["/out/seg.dcm"], due=300.0)
    return job_id


def state(journal: Journal, job_id: str) -> str:
    job = journal.get(job_id)
    assert job is not None
    return job.state


def test_the_transition_table_covers_every_state() -> None:
    sources = {s for starts, _ in TRANSITIONS.values() for s in starts}
    targets = {target for _, target in TRANSITIONS.values()}
    assert sources | targets == {
        "received", "queued", "processing", "exporting", "done", "failed", "dead_letter",
        "ignored",
    }  # fmt: skip
    assert "failed" not in sources  # a failed study is sent again, never re-run


def test_the_happy_path(journal: Journal) -> None:
    job_id = exporting(journal)
    job = journal.get(job_id)
    assert job is not None
    assert (job.state, job.outputs, job.output_dir, job.next_export_at) == (
        "exporting", ["/out/seg.dcm"], "/out", 300.0
    )  # fmt: skip
    later = journal.retry_export_later(job_id, 1, 400.0, ["A@h:1"], "B@h:2: refused")
    assert (later.state, later.export_attempts, later.next_export_at) == ("exporting", 1, 400.0)
    assert (later.delivered, later.error_reason) == (["A@h:1"], "export-retrying")
    done = journal.mark_done(job_id, ["A@h:1", "B@h:2"])
    assert (done.state, done.delivered, done.error, done.error_reason) == (
        "done", ["A@h:1", "B@h:2"], None, None
    )  # fmt: skip
    assert done.finished_at is not None and done.next_export_at is None
    again = journal.retry_export(job_id)
    assert (again.state, again.delivered, again.finished_at) == ("exporting", [], None)


def test_failure_and_dead_letter(journal: Journal) -> None:
    job_id = processing(journal)
    failed = journal.mark_failed(job_id, "no-output", "nothing written", OUT)
    assert (failed.state, failed.error_reason, failed.error) == (
        "failed", "no-output", "nothing written"
    )  # fmt: skip
    assert failed.finished_at is not None
    other = exporting_second(journal)
    dead = journal.mark_dead_letter(other, [], "PACS@h:1: refused")
    assert (dead.state, dead.error_reason, dead.next_export_at) == (
        "dead_letter", "export-failed", None
    )  # fmt: skip
    assert journal.retry_export(other).state == "exporting"


def exporting_second(journal: Journal) -> str:
    job_id = received(journal, "1.2")  # the first job is finished: a new one opens
    journal.queue_quiet_jobs(cutoff=200.0)
    claimed = journal.claim_next_queued()
    assert claimed is not None and claimed.job_id == job_id
    journal.mark_exporting(job_id, OUT, ["/out/seg.dcm"])
    return job_id


ILLEGAL: list[tuple[str, Callable[[Journal], str], Callable[[Journal, str], Job]]] = [
    ("export from received", received, lambda j, i: j.mark_exporting(i, OUT, ["/x"])),
    ("fail from received", received, lambda j, i: j.mark_failed(i, "x", "x", OUT)),
    ("done from processing", processing, lambda j, i: j.mark_done(i, [])),
    ("dead-letter from processing", processing, lambda j, i: j.mark_dead_letter(i, [], "x")),
    ("retry later from processing", processing,
     lambda j, i: j.retry_export_later(i, 1, 1.0, [], "x")),
    ("fail from exporting", exporting, lambda j, i: j.mark_failed(i, "x", "x", OUT)),
    ("export twice", exporting, lambda j, i: j.mark_exporting(i, OUT, ["/y"])),
]  # fmt: skip


@pytest.mark.parametrize(("name", "setup", "move"), ILLEGAL, ids=[c[0] for c in ILLEGAL])
def test_illegal_transitions_change_nothing(
    journal: Journal,
    name: str,
    setup: Callable[[Journal], str],
    move: Callable[[Journal, str], Job],
) -> None:
    job_id = setup(journal)
    before = journal.get(job_id)
    with pytest.raises(IllegalTransitionError) as raised:
        move(journal, job_id)
    assert raised.value.job_id == job_id and raised.value.state == (before and before.state)
    assert journal.get(job_id) == before


def test_terminal_states_stay_terminal(journal: Journal) -> None:
    job_id = processing(journal)
    journal.mark_failed(job_id, "x", "x", OUT)
    for move in (
        lambda: journal.mark_exporting(job_id, OUT, ["/x"]),
        lambda: journal.mark_done(job_id, []),
        lambda: journal.mark_dead_letter(job_id, [], "x"),
        lambda: journal.retry_export(job_id),  # failed: no results to re-export
    ):
        with pytest.raises(IllegalTransitionError):
            move()
    assert state(journal, job_id) == "failed"


def test_re_export_needs_results_and_a_finished_export(journal: Journal) -> None:
    job_id = exporting(journal)
    with pytest.raises(IllegalTransitionError, match="is exporting: nothing to re-export"):
        journal.retry_export(job_id)
    with pytest.raises(ValueError, match="nothing to re-export"):  # what the CLI catches
        journal.retry_export(received(journal, "1.9"))


def test_unknown_jobs_are_key_errors(journal: Journal) -> None:
    with pytest.raises(KeyError):
        journal.mark_done("nope", [])
    with pytest.raises(KeyError):
        journal.retry_export("nope")
