"""The Runner protocol: what the service takes of a pipeline, with no pipeline loaded."""

from __future__ import annotations

from pathlib import Path

from service.app import Service
from service.worker import Runner
from tests.service_support import StubRunner, settings_for


def test_a_runner_handed_in_audits_into_the_service_log_and_names_its_model(
    tmp_path: Path,
) -> None:
    runner: Runner = StubRunner()
    service = Service(settings_for(tmp_path / "var"), pipeline=runner)
    try:
        assert runner.audit_log is service.audit
        assert service.recorder.model_version == "9.9.9"
    finally:
        service.journal.close()
