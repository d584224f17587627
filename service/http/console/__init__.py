"""The web console: what the appliance did, for the people who run it, at ``/``.

Served by the HTTP sidecar beside the API (same process, same journal), all of it on
the server: HTML pages (:mod:`.pages`), PNG pictures of each series rendered from the
job's own result files (:mod:`operators.preview`, cached in :class:`.overview.PictureCache`),
and the bundled stylesheet and icon under ``/console/static``: nothing loads from
elsewhere and no script runs, so it works in the air gap.

Pages: ``/`` health, queue, dead-lettered exports (re-sent with one button) and the
newest jobs (state, run and stage timings, uncertainty score against its threshold,
review flag); ``/console/jobs/{job_id}`` one job: its journal record, stage timings,
per series what the run found and its pictures (MIP and three axial slices, vessels
beside the uncertainty map), links to the result files. Sign-in: :mod:`.session`.

The console's routes are not part of the API: the OpenAPI document leaves them out.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from service.http.console import views
from service.http.console.overview import PictureCache
from service.http.console.session import ConsoleSession
from service.http.console.views import Console

STATIC_DIR = Path(__file__).parent / "static"
JOB = "/console/jobs/{job_id}"


def console_routes() -> list[BaseRoute]:
    return [
        Route("/", views.home, methods=["GET"]),
        Route("/console/login", views.login_form, methods=["GET"]),
        Route("/console/login", views.login, methods=["POST"]),
        Route("/console/logout", views.logout, methods=["POST"]),
        Route(JOB, views.job_page, methods=["GET"]),
        Route(JOB + "/series/{index:int}/{name}.png", views.picture, methods=["GET"]),
        Route(JOB + "/files/{path:path}", views.result_file, methods=["GET"]),
        Route(JOB + "/results.zip", views.results_zip, methods=["GET"]),
        Route(JOB + "/retry-export", views.retry_export, methods=["POST"]),
        Mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static"),
    ]


def console_state(token: str | None, dev_mode: bool, https: bool, version: str) -> Console:
    """The console's shared state (``app.state.console``)."""
    session = ConsoleSession(token, enabled=not dev_mode, secure=https)
    return Console(session=session, pictures=PictureCache(), version=version)


__all__ = ["STATIC_DIR", "Console", "console_routes", "console_state"]
