"""``Grouper.poll(now=...)``: a study is released only after its quiet period.

No thread and no wall clock: every pass gets its ``now``, and the journal's times are
set through ``register_instance(now=...)``. The times used (around 1000 s after the
epoch) are far from wall time, so a pass that read the clock instead of ``now`` would
release everything at once and the tests would fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.grouping import Grouper
from service.journal import Job, Journal
from service.observability.metrics import ApplianceMetrics

QUIET = 10.0


class Recorder:
    """Stands in for ``StudyRecorder``: the jobs it was told were queued."""

    def __init__(self) -> None:
        self.queued: list[Job] = []

    def study_queued(self, job: Job) -> None:
        self.queued.append(job)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal(tmp_path / "journal.sqlite3")
    yield journal
    journal.close()


def make_grouper(journal: Journal, records: Recorder | None = None) -> tuple[Grouper, list[int]]:
    wakeups: list[int] = []
    grouper = Grouper(
        journal,
        ApplianceMetrics(),
        QUIET,
        on_queued=lambda: wakeups.append(1),
        recorder=records,  # type: ignore[arg-type]
    )
    return grouper, wakeups


def receive(journal: Journal, study: str, sop: str, at: float, tmp: Path) -> str:
    registered = journal.register_instance(study, sop, tmp / sop, 1, now=at)
    return registered.job_id or ""


def state(journal: Journal, job_id: str) -> str:
    job = journal.get(job_id)
    assert job is not None
    return job.state


@pytest.mark.requirement("SRS-043")
def test_a_study_is_released_only_once_its_quiet_period_has_passed(
    journal: Journal, tmp_path: Path
) -> None:
    job_id = receive(journal, "1.2.3", "1.2.3.1", 1000.0, tmp_path)
    receive(journal, "1.2.3", "1.2.3.2", 1003.0, tmp_path)  # the last instance: t = 1003
    grouper, wakeups = make_grouper(journal)

    assert grouper.poll(now=1003.0) == 0
    assert grouper.poll(now=1003.0 + QUIET - 0.001) == 0
    assert state(journal, job_id) == "received" and wakeups == []

    assert grouper.poll(now=1003.0 + QUIET) == 1  # quiet for exactly the period: due
    assert state(journal, job_id) == "queued" and wakeups == [1]
    # Released once: later passes neither queue it again nor wake the worker again.
    assert grouper.poll(now=5000.0) == 0 and wakeups == [1]


@pytest.mark.requirement("SRS-043")
def test_a_late_instance_restarts_the_quiet_period(journal: Journal, tmp_path: Path) -> None:
    job_id = receive(journal, "1.2.3", "1.2.3.1", 1000.0, tmp_path)
    grouper, _ = make_grouper(journal)
    assert grouper.poll(now=1009.0) == 0
    receive(journal, "1.2.3", "1.2.3.2", 1009.0, tmp_path)  # just before it fell quiet
    assert grouper.poll(now=1010.0) == 0  # 10 s after the first, 1 s after the last
    assert grouper.poll(now=1018.9) == 0
    assert grouper.poll(now=1019.0) == 1 and state(journal, job_id) == "queued"


@pytest.mark.requirement("SRS-043")
def test_a_resent_duplicate_also_keeps_the_study_open(journal: Journal, tmp_path: Path) -> None:
    job_id = receive(journal, "1.2.3", "1.2.3.1", 1000.0, tmp_path)
    assert journal.register_instance("1.2.3", "1.2.3.1", tmp_path / "x", 1, now=1008.0).duplicate
    grouper, _ = make_grouper(journal)
    assert grouper.poll(now=1010.0) == 0  # would be due without the resend
    assert grouper.poll(now=1018.0) == 1 and state(journal, job_id) == "queued"


@pytest.mark.requirement("SRS-043")
def test_studies_fall_quiet_independently(journal: Journal, tmp_path: Path) -> None:
    early = receive(journal, "1.2.3", "1.2.3.1", 1000.0, tmp_path)
    late = receive(journal, "1.2.4", "1.2.4.1", 1005.0, tmp_path)
    records = Recorder()
    grouper, wakeups = make_grouper(journal, records)

    assert grouper.poll(now=1012.0) == 1
    assert (state(journal, early), state(journal, late)) == ("queued", "received")
    assert grouper.poll(now=1015.0) == 1
    assert state(journal, late) == "queued"
    assert [job.job_id for job in records.queued] == [early, late]
    assert wakeups == [1, 1]  # one wake-up per pass that queued something


@pytest.mark.requirement("SRS-043")
def test_a_pass_observes_receive_time_and_sets_the_queue_gauge(
    journal: Journal, tmp_path: Path
) -> None:
    receive(journal, "1.2.3", "1.2.3.1", 1000.0, tmp_path)
    receive(journal, "1.2.3", "1.2.3.2", 1004.5, tmp_path)
    receive(journal, "1.2.4", "1.2.4.1", 1020.0, tmp_path)
    grouper, _ = make_grouper(journal)
    registry = grouper.metrics.registry

    assert grouper.poll(now=1015.0) == 1
    labels = {"stage": "receive", "member": ""}
    count = registry.get_sample_value("minivess_stage_duration_seconds_count", labels)
    total = registry.get_sample_value("minivess_stage_duration_seconds_sum", labels)
    assert (count, total) == (1.0, 4.5)  # first to last instance of the queued study
    # Unfinished = the queued study and the one still receiving.
    assert registry.get_sample_value("minivess_queue_depth") == 2.0
    claimed = journal.claim_next_queued()
    assert claimed is not None
    journal.mark_failed(claimed.job_id, "x", "x", Path("/out"))
    assert grouper.poll(now=1016.0) == 0
    assert registry.get_sample_value("minivess_queue_depth") == 1.0


def test_an_idle_pass_changes_nothing(journal: Journal) -> None:
    grouper, wakeups = make_grouper(journal)
    assert grouper.poll(now=1000.0) == 0 and wakeups == []
    assert grouper.metrics.registry.get_sample_value("minivess_queue_depth") == 0.0


@pytest.mark.parametrize(("quiet", "tick"), [(10.0, 0.5), (1.0, 0.25), (0.2, 0.05)])
def test_the_timer_ticks_often_enough_for_short_quiet_periods(
    journal: Journal, quiet: float, tick: float
) -> None:
    grouper = Grouper(journal, ApplianceMetrics(), quiet, on_queued=lambda: None)
    assert grouper.tick_s == pytest.approx(tick)


@pytest.mark.requirement("SRS-043", "SRS-073")
def test_downtime_is_not_silence_a_study_waits_a_quiet_period_after_the_start(
    journal: Journal, tmp_path: Path
) -> None:
    # The head of a study arrived long before a crash; the sender resumes after the start.
    job_id = receive(journal, "1.2.3", "1.2.3.1", time.time() - 10 * QUIET, tmp_path)
    grouper, wakeups = make_grouper(journal)
    grouper.start()
    try:
        assert grouper.poll() == 0
        assert state(journal, job_id) == "received" and wakeups == []
        assert grouper.poll(now=grouper.hold_until) == 1  # a quiet period after the start
        assert state(journal, job_id) == "queued"
    finally:
        grouper.stop()
