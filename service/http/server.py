"""The HTTP sidecar: a BentoML 1.4 service, served in the appliance's own process.

Design (why it looks like this):

* One process. The HTTP API must share the Service's journal, spool, ``InstanceIngest`` and
  warm pipeline with the DICOM gateway, so ``bentoml serve`` (a supervisor that forks
  worker processes, each of which would construct its own appliance and bind the DICOM
  port) is not used. Instead :func:`bento_service` declares a ``@bentoml.service`` class
  around *this* appliance and :class:`HttpServer` serves its ASGI app
  (``Service.to_asgi()``, exactly what BentoML's own worker runs) with uvicorn in a
  thread, on a socket bound up front (a taken port fails ``start()``, like the gateway).
* Our routes need raw requests (streamed multipart/related STOW-RS bodies, custom
  status codes, problem+json, content negotiation), which ``@bentoml.api`` methods
  (JSON/IO-descriptor POST endpoints) cannot express: they are a Starlette app mounted
  with ``@bentoml.asgi_app(app, path="/")``. BentoML keeps its own ``/livez`` and
  ``/readyz`` (probes), asking our ``__is_ready__`` (:mod:`service.http.health`).
* BentoML's metrics are off (they assume its multi-process server and
  ``PROMETHEUS_MULTIPROC_DIR``); ``/metrics`` serves ``ApplianceMetrics``' registry.
  Its request timeout is raised to an hour: its default 60 s would cancel a large STOW
  upload mid-way (the time runs until the response starts).
* Error handlers on both the inner and BentoML's outer app turn every error, BentoML's
  404/405/503 included, into RFC 9457 problem+json (:mod:`service.http.problems`).

Routes: ``POST /v1/studies``, ``GET /v1/jobs/{job_id}``, ``GET /v1/jobs/{job_id}/result``
(:mod:`service.http.jobs`); ``POST /dicomweb/studies[/{study}]`` (:mod:`service.http.stow`);
``/livez``, ``/readyz``, ``/metrics``; ``/openapi.json`` (= ``/docs.json``), ``/docs`` (Swagger
UI), ``/problems/{slug}`` (:mod:`service.http.openapi`); ``/`` and ``/console/...``, the web
console (:mod:`service.http.console`, signed in with the same token, not in the OpenAPI
document). Auth: :mod:`service.http.auth`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import tomllib
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import bentoml
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from service.http import health, jobs, openapi, stow
from service.http.auth import BearerAuth
from service.http.console import console_routes, console_state
from service.http.problems import EXCEPTION_HANDLERS

if TYPE_CHECKING:
    from service.app import Service

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 3600
SHUTDOWN_GRACE_S = 10


def api_app(service: Service) -> Starlette:
    """Our routes as a Starlette app, bearer-protected under /v1 and /dicomweb."""
    settings = service.settings
    token = settings.api_token.get_secret_value() if settings.api_token else None
    routes = [
        Route("/v1/studies", jobs.upload, methods=["POST"]),
        Route("/v1/jobs/{job_id}", jobs.job_status, methods=["GET"]),
        Route("/v1/jobs/{job_id}/result", jobs.job_result, methods=["GET"]),
        Route("/dicomweb/studies", stow.stow, methods=["POST"]),
        Route("/dicomweb/studies/{study}", stow.stow, methods=["POST"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        Route("/openapi.json", openapi.openapi_document, methods=["GET"]),
        Route("/docs.json", openapi.openapi_document, methods=["GET"]),
        Route("/docs", openapi.docs_page, methods=["GET"]),
        Route("/problems/{slug}", openapi.problem_type, methods=["GET"]),
        *console_routes(),
    ]
    middleware = [Middleware(BearerAuth, token=token, enabled=not settings.dev_mode)]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS)
    app.state.appliance = service
    https = settings.http_tls_cert is not None  # the session cookie is then Secure
    app.state.console = console_state(token, settings.dev_mode, https, _version())
    return app


def _version() -> str:
    """The appliance's version: installed metadata, else the source tree's pyproject."""
    try:
        return package_version("minivess-appliance")
    except PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def bento_service(service: Service) -> Any:
    """The ``@bentoml.service`` of this appliance (a new class per appliance, so tests can
    run several in one process)."""
    api = api_app(service)

    @bentoml.service(
        name="minivess", metrics={"enabled": False}, traffic={"timeout": REQUEST_TIMEOUT_S}
    )
    @bentoml.asgi_app(api, path="/")
    class MinivessSidecar:
        """HTTP sidecar of the MinIVess appliance: uploads, jobs, DICOMweb STOW-RS."""

        def __is_ready__(self) -> bool:
            return health.require_ready(service)

    generated = cast(Any, MinivessSidecar).openapi_spec.asdict()  # BentoML's document
    api.state.openapi = openapi.build_spec(generated, _version())
    return MinivessSidecar


def bind(host: str, port: int) -> socket.socket:
    """The listening address, bound here so a taken port raises OSError in the caller
    (uvicorn's own binding calls sys.exit, which would end the process or a test run)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart over TIME_WAIT
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class HttpServer:
    """The sidecar on ``settings.http_host:http_port`` (port 0: a free one, see ``port``)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.app = bento_service(service).to_asgi(is_main=True)
        for kind, handler in EXCEPTION_HANDLERS.items():  # BentoML's own routes' errors
            self.app.add_exception_handler(kind, handler)
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("HTTP server not started")
        return int(self._socket.getsockname()[1])

    def start(self, timeout: float = 30.0) -> None:
        settings = self.service.settings
        config = uvicorn.Config(
            self.app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            # HTTPS only when configured: the port then refuses plain HTTP.
            ssl_certfile=str(settings.http_tls_cert) if settings.http_tls_cert else None,
            ssl_keyfile=str(settings.http_tls_key) if settings.http_tls_key else None,
        )
        self._socket = bind(settings.http_host, settings.http_port)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="minivess-http",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the HTTP sidecar did not start (see the log)")
            time.sleep(0.02)
        log.info(
            "HTTP sidecar on http://%s:%d (auth %s)",
            settings.http_host,
            self.port,
            "off: dev mode" if settings.dev_mode else "bearer token",
        )

    def stop(self) -> None:
        """Stop accepting; requests in flight get ``SHUTDOWN_GRACE_S`` to finish."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(SHUTDOWN_GRACE_S + 5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
