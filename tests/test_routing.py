"""Routing rules on their own: the rule file, first match, the off-peak window, the
journal's claim order and its migration (no peers; tests/test_routing_service.py pushes
real studies)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.journal import Journal
from service.routing import EXAMPLE, OffPeak, Router, RoutingRules, load_rules
from service.settings import SettingsError
from tests.service_support import settings_for

RULES = {
    "off_peak": {"start": "20:00", "end": "06:00", "timezone": "UTC"},
    "rules": [
        {"name": "stat", "when": {"calling_ae": "ER_*", "Modality": ["CT", "MR"]},
         "priority": "stat"},
        {"name": "research", "when": {"StudyDescription": "research*"}, "action": "route",
         "destination": "RESEARCH"},
        {"name": "no-spine", "when": {"BodyPartExamined": "*SPINE*"}, "action": "ignore"},
        {"name": "night", "when": {"StudyDescription": "*FOLLOW*"}, "priority": "off_peak"},
    ],
    "default": {"action": "process", "priority": "normal"},
}  # fmt: skip


@pytest.mark.requirement("SRS-088")
def test_first_matching_rule_wins_else_the_default() -> None:
    rules = RoutingRules.model_validate(RULES)
    study = {"calling_ae": "ER_CT1", "Modality": "CT", "StudyDescription": "RESEARCH FOLLOW"}
    assert rules.decide(study)[0] == "stat"  # matches three rules: the first decides
    assert rules.decide({**study, "calling_ae": "PACS"})[0] == "research"  # case-insensitive
    assert rules.decide({**study, "calling_ae": "", "StudyDescription": "x FOLLOW-UP"}) == (
        "night", rules.rules[3]
    )  # fmt: skip
    name, outcome = rules.decide({"Modality": "CT"})
    assert name is None and (outcome.action, outcome.priority) == ("process", "normal")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rules": [{"name": "a", "when": {"StudyDescriptoin": "x"}}]}, "StudyDescriptoin"),
        ({"rules": [{"name": "a", "action": "route"}]}, "needs a destination"),
        ({"rules": [{"name": "a", "destination": "X"}]}, "only it takes one"),
        ({"rules": [{"name": "a"}, {"name": "a"}]}, "unique"),
        ({"rules": [{"name": "a", "priority": "off_peak"}]}, "off_peak window"),
        ({"rules": [{"name": "a", "priority": "urgent"}]}, "priority"),
        ({"off_peak": {"start": "20:00", "end": "06:00", "timezone": "Mars/Olympus"}},
         "unknown time zone"),
        ({"defaults": {}}, "defaults"),
    ],
)  # fmt: skip
def test_bad_rule_files_are_refused_with_the_reason(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    import json

    path = tmp_path / "rules.json"
    path.write_text(json.dumps(change))
    with pytest.raises(SettingsError, match=message):
        load_rules(path)


def test_the_example_file_is_valid_and_its_destination_must_exist(tmp_path: Path) -> None:
    rules = load_rules(EXAMPLE)
    assert [rule.name for rule in rules.rules][:2] == ["stroke-is-stat", "research-to-archive"]
    settings = settings_for(tmp_path / "var", routing_rules=EXAMPLE)
    with pytest.raises(SettingsError, match="'RESEARCH' is not of export_destinations"):
        Router.from_settings(settings)
    research = {"host": "127.0.0.1", "port": 11113, "ae_title": "RESEARCH", "results": False}
    settings = settings_for(tmp_path / "var", routing_rules=EXAMPLE,
                            export_destinations=[research])  # fmt: skip
    assert Router.from_settings(settings).destinations == {"RESEARCH": "RESEARCH@127.0.0.1:11113"}
    (tmp_path / "bad.yaml").write_text("rules: [name: x\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_rules(tmp_path / "bad.yaml")


def _at(hour: int, minute: int = 0) -> float:
    return datetime(2026, 12, 6, hour, minute, tzinfo=UTC).timestamp()


def test_off_peak_window_spans_midnight() -> None:
    window = OffPeak.model_validate({"start": "20:00", "end": "06:00", "timezone": "UTC"})
    assert window.wait_until(_at(21)) is None and window.wait_until(_at(5, 59)) is None
    assert window.wait_until(_at(6)) == _at(20)
    assert window.wait_until(_at(19, 30)) == _at(20)
    day = OffPeak.model_validate({"start": "12:00", "end": "13:00", "timezone": "UTC"})
    assert day.wait_until(_at(13, 30)) == _at(12) + 86400  # tomorrow's window


def test_claim_order_stat_first_and_off_peak_waits(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite3")
    jobs = {}
    for n, name in enumerate(["normal-1", "off-peak", "normal-2", "stat"]):
        registered = journal.register_instance(f"1.2.{n}", f"1.2.{n}.1", tmp_path / "x", 1,
                                               now=100.0 + n)  # fmt: skip
        jobs[name] = registered.job_id
    decided = {"normal-1": (1, None), "off-peak": (0, 5000.0), "normal-2": (1, None),
               "stat": (2, None)}  # fmt: skip
    for name, (priority, not_before) in decided.items():
        journal.queue_routed(jobs[name], 200.0, priority, not_before, name)
    order = []
    while (job := journal.claim_next_queued(now=1000.0)) is not None:
        order.append(job.rule)
    assert order == ["stat", "normal-1", "normal-2"]  # the off-peak study waits
    claimed = journal.claim_next_queued(now=5000.0)
    assert claimed is not None and claimed.rule == "off-peak"
    journal.close()


def test_an_instance_after_the_cutoff_keeps_the_study_open(tmp_path: Path) -> None:
    from service.journal import IllegalTransitionError

    journal = Journal(tmp_path / "journal.sqlite3")
    registered = journal.register_instance("1.2.3", "1.2.3.1", tmp_path / "x", 1, now=100.0)
    assert registered.job_id is not None
    journal.register_instance("1.2.3", "1.2.3.2", tmp_path / "y", 1, now=150.0)
    with pytest.raises(IllegalTransitionError):
        journal.ignore(registered.job_id, 120.0, tmp_path / "kept", [], "rule")
    job = journal.get(registered.job_id)
    assert job is not None and job.state == "received"
    journal.close()


def test_an_older_journal_gets_the_routing_columns(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, study_uid TEXT NOT NULL, state TEXT "
        "NOT NULL, source TEXT NOT NULL, correlation_id TEXT NOT NULL, created_at REAL NOT "
        "NULL, first_received_at REAL NOT NULL, last_received_at REAL NOT NULL, updated_at "
        "REAL NOT NULL, finished_at REAL, instances INTEGER NOT NULL DEFAULT 0, attempts "
        "INTEGER NOT NULL DEFAULT 0, export_attempts INTEGER NOT NULL DEFAULT 0, "
        "next_export_at REAL, delivered TEXT NOT NULL DEFAULT '[]', output_dir TEXT, "
        "outputs TEXT NOT NULL DEFAULT '[]', error TEXT, error_reason TEXT)"
    )
    old.execute("INSERT INTO jobs (job_id, study_uid, state, source, correlation_id, "
                "created_at, first_received_at, last_received_at, updated_at) VALUES "
                "('j1', '1.2', 'queued', 'dimse', 'c', 1, 1, 1, 1)")  # fmt: skip
    old.commit()
    old.close()
    journal = Journal(path)
    job = journal.claim_next_queued()
    assert job is not None and (job.job_id, job.priority, job.destinations) == ("j1", 1, None)
    journal.close()
