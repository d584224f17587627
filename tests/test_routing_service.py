"""Routing rules in the running service, with real ``storescu`` pushes: an ignored study is
kept but not processed, a routed study reaches its own destination (a real Orthanc) as
received, a STAT study jumps the queue and an off-peak study waits for its window."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pydicom
import pytest

from map_app.pipeline import Pipeline
from operators.run_report import ModelSummary, RunReport
from service.app import Service
from tests.peers import run_orthanc, storescu
from tests.service_support import (  # pipeline_fixture: the module's pipeline fixture
    jobs_of,
    make_study,
    metric,
    orthanc_sop_uids,
    pipeline_fixture,  # noqa: F401
    settings_for,
    wait_finished,
    wait_for,
)

pytestmark = [pytest.mark.peer, pytest.mark.slow]


class RecordingRunner:
    """The real pipeline, recording which studies it ran, in order; with a gate, the
    first run waits until the test opens it (so that studies queue up behind it)."""

    def __init__(self, pipeline: Pipeline, gate: threading.Event | None = None) -> None:
        self.pipeline, self.gate = pipeline, gate
        self.audit_log = None
        self.ran: list[str] = []

    def model_summary(self) -> ModelSummary:
        return self.pipeline.model_summary()

    def run(
        self, input_path: Path, output_dir: Path, correlation_id: str | None = None
    ) -> RunReport:
        self.ran.append(input_path.name)  # the spool folder is named by the Study UID
        if self.gate is not None and len(self.ran) == 1:
            assert self.gate.wait(120), "the test never opened the gate"
        return self.pipeline.run(input_path, output_dir, correlation_id)


def rules_file(folder: Path, rules: dict[str, Any]) -> Path:
    path = folder / "routing.json"
    path.write_text(json.dumps(rules))
    return path


def described(folder: Path, seed: int, description: str) -> list[Path]:
    """A synthetic study whose StudyDescription is ``description``."""
    files = make_study(folder, seed=seed).files
    for path in files:
        ds = pydicom.dcmread(path)
        ds.StudyDescription = description
        ds.save_as(path)
    return files


@pytest.mark.requirement("SRS-043", "SRS-088")
def test_an_ignored_study_is_kept_and_not_processed(pipeline: Pipeline, tmp_path: Path) -> None:
    study = make_study(tmp_path / "study", seed=51)
    rules = {"rules": [{"name": "not-from-modality-x", "when": {"calling_ae": "MODALITY_X"},
                        "action": "ignore"}]}  # fmt: skip
    settings = settings_for(tmp_path / "var", routing_rules=rules_file(tmp_path, rules))
    runner = RecordingRunner(pipeline)
    with Service(settings, pipeline=runner) as service:
        storescu("127.0.0.1", service.gateway.port, "MINIVESS", study.files,
                 calling_aet="MODALITY_X")  # fmt: skip
        job = wait_finished(service.journal, study.study_instance_uid)
        registry = service.metrics.registry
        assert metric(registry, "minivess_routing_decisions_total", action="ignore") == 1
    assert runner.ran == []
    assert (job.state, job.rule, job.error_reason) == (
        "ignored", "not-from-modality-x", "routing-ignored"
    )  # fmt: skip
    kept = settings.var_dir / "ignored" / job.job_id
    assert job.output_dir == str(kept) and len(job.outputs) == len(study.files)
    sops = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in job.outputs}
    assert sops == set(study.sop_instance_uids)  # every acknowledged instance is kept
    assert not any(settings.spool_dir.rglob("*.dcm"))  # and the spool released


@pytest.mark.requirement("SRS-043", "SRS-088")
def test_a_routed_study_goes_to_its_destination_as_received(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    files = described(tmp_path / "study", 52, "RESEARCH PROTOCOL 7")
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    rules = {"rules": [{"name": "research", "when": {"StudyDescription": "research*"},
                        "action": "route", "destination": "RESEARCH"}]}  # fmt: skip
    runner = RecordingRunner(pipeline)
    with (
        run_orthanc(tmp_path / "pacs", aet="PACS") as pacs,
        run_orthanc(tmp_path / "research", aet="RESEARCH") as research,
    ):
        destinations = [
            {"host": "127.0.0.1", "port": pacs.dicom_port, "ae_title": "PACS"},
            {"host": "127.0.0.1", "port": research.dicom_port, "ae_title": "RESEARCH",
             "results": False},
        ]  # fmt: skip
        settings = settings_for(tmp_path / "var", export_destinations=destinations,
                                routing_rules=rules_file(tmp_path, rules))  # fmt: skip
        with Service(settings, pipeline=runner) as service:
            storescu("127.0.0.1", service.gateway.port, "MINIVESS", files)
            job = wait_finished(service.journal, study_uid)
            registry = service.metrics.registry
            assert metric(registry, "minivess_routing_decisions_total", action="route") == 1
        assert job.state == "done", job.error
        assert job.delivered == [f"RESEARCH@127.0.0.1:{research.dicom_port}"]
        sent = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}
        assert sorted(orthanc_sop_uids(research, study_uid)) == sorted(sent)
        assert orthanc_sop_uids(pacs, study_uid) == []  # results-only destination: nothing
    assert runner.ran == []


@pytest.mark.requirement("SRS-043", "SRS-088")
def test_a_stat_study_jumps_the_queue(pipeline: Pipeline, tmp_path: Path) -> None:
    studies = {name: make_study(tmp_path / name, seed=seed)
               for name, seed in (("first", 53), ("normal-a", 54), ("normal-b", 55),
                                  ("stat", 56))}  # fmt: skip
    rules = {"rules": [{"name": "er-is-stat", "when": {"calling_ae": "ER_CT*",
                                                       "Modality": "CT"},
                        "priority": "stat"}]}  # fmt: skip
    settings = settings_for(tmp_path / "var", routing_rules=rules_file(tmp_path, rules))
    gate = threading.Event()
    runner = RecordingRunner(pipeline, gate)
    with Service(settings, pipeline=runner) as service:
        port = service.gateway.port
        storescu("127.0.0.1", port, "MINIVESS", studies["first"].files)
        wait_for(lambda: runner.ran, 30, "the first study to start")  # it holds the worker
        storescu("127.0.0.1", port, "MINIVESS", studies["normal-a"].files)
        storescu("127.0.0.1", port, "MINIVESS", studies["normal-b"].files)
        storescu("127.0.0.1", port, "MINIVESS", studies["stat"].files, calling_aet="ER_CT2")
        uids = {name: s.study_instance_uid for name, s in studies.items()}

        def all_queued() -> bool:
            return all(jobs_of(service.journal, uids[n])[0].state == "queued"
                       for n in ("normal-a", "normal-b", "stat"))  # fmt: skip

        wait_for(all_queued, 30, "the three studies to be queued")
        gate.set()
        for uid in uids.values():
            assert wait_finished(service.journal, uid, timeout=180).state == "done"
        stat_job = jobs_of(service.journal, uids["stat"])[0]
    names = {uid: name for name, uid in uids.items()}
    assert [names[uid] for uid in runner.ran] == ["first", "stat", "normal-a", "normal-b"]
    assert (stat_job.rule, stat_job.priority) == ("er-is-stat", 2)


@pytest.mark.requirement("SRS-043", "SRS-088")
def test_an_off_peak_study_waits_for_its_window(pipeline: Pipeline, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    opens, closes = now + timedelta(hours=2), now + timedelta(hours=3)
    rules = {
        "off_peak": {"start": opens.strftime("%H:%M"), "end": closes.strftime("%H:%M"),
                     "timezone": "UTC"},
        "rules": [{"name": "night", "when": {"calling_ae": "NIGHTLY"},
                   "priority": "off_peak"}],
    }  # fmt: skip
    waiting, normal = make_study(tmp_path / "w", seed=57), make_study(tmp_path / "n", seed=58)
    settings = settings_for(tmp_path / "var", routing_rules=rules_file(tmp_path, rules))
    runner = RecordingRunner(pipeline)
    with Service(settings, pipeline=runner) as service:
        storescu("127.0.0.1", service.gateway.port, "MINIVESS", waiting.files,
                 calling_aet="NIGHTLY")  # fmt: skip
        storescu("127.0.0.1", service.gateway.port, "MINIVESS", normal.files)
        assert wait_finished(service.journal, normal.study_instance_uid).state == "done"
        job = jobs_of(service.journal, waiting.study_instance_uid)[0]
    assert runner.ran == [normal.study_instance_uid]
    assert (job.state, job.rule, job.priority) == ("queued", "night", 0)
    expected = opens.replace(second=0, microsecond=0).timestamp()
    assert job.not_before == pytest.approx(expected)
