"""The HTTP API fuzzed from its own OpenAPI document (schemathesis): no 5xx, ever."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from map_app.pipeline import Pipeline
from service.app import Service
from tests.service_support import MODELS, settings_for

TOKEN = "fuzz-token-0123456789"


@schemathesis.serializer("multipart/related")
def _related_body(ctx: object, value: object) -> bytes:
    """Generated STOW-RS bodies as raw bytes: the server must cope with any of them."""
    if isinstance(value, bytes):
        return value
    return json.dumps(value, default=str).encode()


@pytest.fixture(scope="module")
def api_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    config = settings_for(tmp_path_factory.mktemp("fuzz") / "var", api_token=TOKEN)
    with Service(config, pipeline=Pipeline(MODELS), http=True) as service:
        yield service


@pytest.fixture(scope="module")
def api_schema(api_service: Service) -> schemathesis.BaseSchema:
    assert api_service.http is not None
    base = f"http://127.0.0.1:{api_service.http.port}"
    return schemathesis.openapi.from_url(f"{base}/openapi.json")


@pytest.mark.requirement("SRS-072")
def test_api_never_answers_with_a_server_error(api_schema: schemathesis.BaseSchema) -> None:
    """Every operation in the published OpenAPI document, 15 generated requests each."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 5  # our routes are in the published document
    statuses: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN}"},
                checks=[not_a_server_error],
                timeout=30,
            )
            statuses.append(response.status_code)

        call()
    assert len(statuses) >= 3 * len(operations)  # the requests really were sent
    assert max(statuses) < 500
