"""The Runner protocol: what the service takes of a pipeline, with no pipeline loaded."""

from __future__ import annotations

from pathlib import Path

from compliance.audit import AuditLog
from operators.run_report import ModelSummary, RunReport
from service.app import Service
from service.worker import Runner
from tests.service_support import settings_for


class StubRunner:
    """A Runner with no models: it names one and never runs."""

    def __init__(self) -> None:
        self.audit_log: AuditLog | None = None

    def model_summary(self) -> ModelSummary:
        return ModelSummary(name="stub", version="9.9.9", providers=["cpu"], members={"a": "0"})

    def run(
        self, input_path: Path, output_dir: Path, correlation_id: str | None = None
    ) -> RunReport:
        raise AssertionError("not run here")


def test_a_runner_handed_in_audits_into_the_service_log_and_names_its_model(
    tmp_path: Path,
) -> None:
    runner: Runner = StubRunner()
    service = Service(settings_for(tmp_path / "var"), pipeline=runner)
    try:
        assert runner.audit_log is service.audit
        assert service.records.model_version == "9.9.9"
    finally:
        service.journal.close()
