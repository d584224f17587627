"""HTTP back-pressure: a full queue answers 503 with Retry-After instead of growing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from map_app.pipeline import Pipeline
from service.app import Service
from tests.service_support import MODELS, make_study, settings_for


@pytest.fixture
def busy_service(tmp_path: Path) -> Iterator[Service]:
    # One pending study at most, and an hour of quiet period: the first study stays pending.
    config = settings_for(tmp_path / "var", max_pending_jobs=1, quiet_period_s=3600,
                          dev_mode=True)  # fmt: skip
    with Service(config, pipeline=Pipeline(MODELS), http=True) as service:
        yield service


def _upload(service: Service, files: list[Path]) -> requests.Response:
    assert service.http is not None
    parts = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in files]
    return requests.post(f"http://127.0.0.1:{service.http.port}/v1/studies", files=parts,
                         timeout=60)  # fmt: skip


@pytest.mark.requirement("SRS-079")
def test_new_study_waits_with_503_when_the_queue_is_full(
    busy_service: Service, tmp_path: Path
) -> None:
    first = make_study(tmp_path / "first", seed=71)
    second = make_study(tmp_path / "second", seed=72)
    assert _upload(busy_service, list(first.files)).status_code == 202
    refused = _upload(busy_service, list(second.files))
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    # More of the study already pending is still accepted: only new studies wait.
    assert _upload(busy_service, list(first.files)[:1]).status_code == 202
    jobs = busy_service.journal.list_jobs()
    assert [job.study_uid for job in jobs] == [first.study_instance_uid]
