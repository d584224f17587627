"""The hand-declared OpenAPI operations match the Starlette routes (no peers: the HTTP app
is built in-process on a service that is not started)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.routing import Route

from service.app import Service
from service.http.console import console_routes
from service.http.openapi import PATHS
from service.http.server import api_app
from tests.service_support import StubRunner, settings_for


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    appliance = Service(settings_for(tmp_path / "var", dev_mode=True), pipeline=StubRunner())
    yield appliance
    appliance.journal.close()


@pytest.mark.requirement("SRS-045")
def test_the_declared_openapi_paths_are_the_routes(service: Service) -> None:
    """The operations declared by hand (service.http.openapi.PATHS) cannot drift from the
    Starlette routes: every API route is declared with its methods, and nothing else is
    (the documentation routes themselves and BentoML's probes aside). The web console's
    routes (``/`` and ``/console/...``: HTML pages, pictures and forms for a signed-in
    browser) are left out of the API document on purpose."""
    documentation = {"/docs", "/docs.json", "/problems/{slug}"}  # the page, an alias, the types
    console = {"/"} | {p for p in (getattr(r, "path", "") for r in console_routes())
                       if p.startswith("/console/")}  # fmt: skip
    assert not console & set(PATHS), "console routes are not API operations"
    routes: dict[str, set[str]] = {}
    for route in api_app(service).routes:
        if isinstance(route, Route) and route.path not in documentation | console:
            routes.setdefault(route.path, set()).update(m.lower() for m in route.methods or ())
    declared = {path: set(operations) for path, operations in PATHS.items()}
    probes = {path for path in declared if path in ("/livez", "/readyz")}
    assert {p: m - {"head"} for p, m in routes.items()} == {
        p: m for p, m in declared.items() if p not in probes
    }
