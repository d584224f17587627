"""Health and metrics: ``/livez``, ``/readyz`` (BentoML's probes) and ``/metrics``.

``/livez`` is BentoML's: 200 while the process serves HTTP. ``/readyz`` is BentoML's
route too, asking our ``__is_ready__``; it answers 200 only when every check passes:

* ``models``: the ensemble is loaded, every member verified against its manifest SHA-256;
* ``gateway``: the DICOM SCP listens;
* ``worker``: the processing thread runs (without it no study would ever finish);
* ``spool``: free disk is above ``min_free_disk_bytes`` (else C-STORE answers 0xA700);
* ``queue``: fewer than ``max_pending_jobs`` unfinished studies (else new ones: 0xA702).

Otherwise 503 ``application/problem+json`` with ``checks`` naming each result, so a
load balancer stops sending studies the appliance would refuse. ``/metrics`` is the
service's own Prometheus registry (``ApplianceMetrics``), in the text format or
OpenMetrics as the scraper's Accept asks (BentoML's metrics are off: they assume its
multi-process server).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.exposition import choose_encoder
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from service.http.problems import ProblemError, ProblemHTTPError
from service.http.uploads import appliance

if TYPE_CHECKING:
    from service.app import Service


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _models(service: Service) -> Check:
    summary = getattr(service.pipeline, "model_summary", None)
    if not callable(summary):
        return Check("models", False, "the pipeline exposes no verified ensemble")
    model = summary()
    if not model.members:
        return Check("models", False, "the ensemble has no members")
    return Check(
        "models",
        True,
        f"{model.name} {model.version}: {len(model.members)} members verified (SHA-256)",
    )


def _gateway(service: Service) -> Check:
    try:
        port = service.gateway.port
    except RuntimeError:
        return Check("gateway", False, "the DICOM gateway is not listening")
    return Check("gateway", True, f"listening on port {port}")


def _spool(service: Service) -> Check:
    free, floor = service.spool.free_bytes(), service.settings.min_free_disk_bytes
    if free < floor:
        return Check("spool", False, f"{free} bytes free, under the {floor}-byte watermark")
    return Check("spool", True, f"{free} bytes free")


def _queue(service: Service) -> Check:
    pending, limit = service.journal.count_unfinished(), service.settings.max_pending_jobs
    if pending >= limit:
        return Check("queue", False, f"{pending} unfinished studies, the limit is {limit}")
    return Check("queue", True, f"{pending} of {limit} unfinished studies")


def readiness(service: Service) -> list[Check]:
    worker = service.worker.is_alive()
    return [
        _models(service),
        _gateway(service),
        Check("worker", worker, "running" if worker else "the processing thread is not running"),
        _spool(service),
        _queue(service),
    ]


def require_ready(service: Service) -> bool:
    """BentoML's ``__is_ready__``: True, or the 503 problem naming the failed checks.

    BentoML only turns a False into a fixed text; raising keeps our specific answer.
    """
    checks = readiness(service)
    failed = [check for check in checks if not check.ok]
    if not failed:
        return True
    detail = "; ".join(f"{check.name}: {check.detail}" for check in failed)
    problem = ProblemError(
        503,
        "not-ready",
        detail,
        {"Retry-After": "10"},
        checks={c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
    )
    raise ProblemHTTPError(problem)


async def metrics(request: Request) -> Response:
    """``GET /metrics``: the appliance's registry (Prometheus text or OpenMetrics)."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    body = await run_in_threadpool(encoder, appliance(request).metrics.registry)
    return Response(body, media_type=content_type)
