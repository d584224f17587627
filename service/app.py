"""The appliance service: gateway, grouping, worker and exporter around one warm pipeline.

``Service(settings).start()`` reconciles the spool with the journal, resumes every
unfinished job, then starts the threads (and, with ``http=True``, the HTTP sidecar of
``service.http`` last); ``stop()`` ends them in reverse order (no new instances first).
Tests run it in-process; ``python -m service serve`` runs it, HTTP included, until
SIGTERM/SIGINT.

Two deployment shapes, one code path:

- one host (default): ``serve`` is the whole appliance in one process, the SQLite
  journal and the spool under ``var_dir``;
- scaled out: ``serve`` with ``local_worker=false`` is the ingest tier (gateway, HTTP
  intake, grouping, export) and :class:`WorkerTier` (``python -m service worker``) the
  inference tier, as many processes as wanted, all on one PostgreSQL ``journal_url`` and
  one shared ``var_dir`` (spool and outputs: a ReadWriteMany volume).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from compliance.audit import AuditLog
from service.drift_monitor import DriftMonitor
from service.export import Exporter
from service.gateway import Gateway
from service.grouping import Grouper
from service.ingest import InstanceIngest
from service.journal import Journal
from service.observability.exposition import MetricsServer
from service.observability.metrics import ApplianceMetrics, set_model_info
from service.routing import Router
from service.settings import ServiceSettings
from service.spool import Spool
from service.study_recorder import StudyRecorder, site_audit_log
from service.worker import Runner, Worker

if TYPE_CHECKING:
    from service.http.server import HttpServer

log = logging.getLogger(__name__)


def load_pipeline(settings: ServiceSettings, audit: AuditLog | None = None) -> Runner:
    """The MAP pipeline with its verified ensemble; it audits every inference."""
    from map_app.config import load_config
    from map_app.pipeline import Pipeline

    return Pipeline(
        Path(settings.model_dir),
        load_config(settings.pipeline_config),
        audit_log=audit,
        open_sessions=True,
    )


class WorkersApart:
    """The ingest tier's stand-in for the local worker (``local_worker=false``): the
    workers are other processes that poll the shared journal, so there is nothing to
    start or wake here, and the ingest tier's readiness does not depend on them."""

    def start(self) -> None:
        pass

    def notify(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def is_alive(self) -> bool:
        return True


class _Appliance:
    """What both tiers hold: settings, metrics, the journal, the spool, the site's audit
    log, the warm pipeline and the study recorder."""

    def __init__(
        self, settings: ServiceSettings, pipeline: Runner | None, metrics: ApplianceMetrics | None
    ) -> None:
        self.settings = settings
        self.metrics = metrics or ApplianceMetrics()
        for folder in (settings.var_dir, settings.outputs_dir, settings.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.journal = Journal.from_settings(settings)
        self.spool = Spool(settings.spool_dir)
        self.audit = site_audit_log(settings)
        self.pipeline = pipeline if pipeline is not None else load_pipeline(settings, self.audit)
        # A pipeline handed in (tests, embedding) audits into this service's log.
        self.pipeline.audit_log = self.audit
        self.recorder = StudyRecorder(settings, self.audit, self.pipeline.model_summary().version)


class Service(_Appliance):
    def __init__(
        self,
        settings: ServiceSettings,
        pipeline: Runner | None = None,
        metrics: ApplianceMetrics | None = None,
        http: bool = False,
    ) -> None:
        super().__init__(settings, pipeline, metrics)
        self.ingest = InstanceIngest(settings, self.spool, self.journal, self.metrics)
        self.gateway = Gateway(settings, self.ingest)
        self.exporter = Exporter(
            settings, self.journal, self.spool, self.metrics, recorder=self.recorder
        )
        self.worker: Worker | WorkersApart = (
            Worker(settings, self.journal, self.spool, self.pipeline, self.metrics,
                   on_exporting=self.exporter.notify, recorder=self.recorder)
            if settings.local_worker else WorkersApart()
        )  # fmt: skip
        self.grouper = Grouper(self.journal, self.metrics, settings.quiet_period_s,
                               on_queued=self.worker.notify, recorder=self.recorder,
                               router=(Router.from_settings(settings), self.spool,
                                       self.exporter.notify))  # fmt: skip
        self.drift = DriftMonitor.from_settings(settings, self.metrics)
        self._started = False
        # HTTP sidecar hook (service/http): on for `serve`, off by default in-process.
        self._http_wanted = http
        self.http: HttpServer | None = None
        self.metrics_server: MetricsServer | None = None

    def reconcile(self) -> int:
        """Register spooled files the journal does not know (a crash between fsync and
        commit: the sender got no success, but the instance is here; keep it)."""
        known = self.journal.known_sop_uids()
        added = 0
        for spooled in self.spool.scan():
            if spooled.sop_uid not in known:
                self.journal.register_instance(spooled.study_uid, spooled.sop_uid, spooled.path,
                                               spooled.size, now=spooled.mtime)  # fmt: skip
                added += 1
        self.metrics.spool_bytes.set(self.spool.bytes_held)
        return added

    def start(self) -> None:
        added = self.reconcile()
        # Only a single host's own journal may put every interrupted run back at once.
        resumed = self.journal.resume(
            requeue_processing=self.journal.exclusive and self.settings.local_worker
        )
        if added or resumed:
            log.info("start-up: %d spooled instances re-registered, %d unfinished jobs resumed",
                     added, len(resumed))  # fmt: skip
        self.metrics.queue_depth.set(self.journal.count_unfinished())
        set_model_info(self.metrics, self.pipeline.model_summary())
        self.exporter.start()
        self.worker.start()
        self.grouper.start()
        if self.drift is not None:
            self.drift.start()
        self.gateway.start()
        self._started = True
        if self._http_wanted:  # HTTP sidecar hook: last up (it reports readiness)
            from service.http.server import HttpServer as Sidecar  # bentoml: only when wanted

            self.http = Sidecar(self)
            try:
                self.http.start()
                self._start_metrics_port()
            except BaseException:
                self.stop()
                raise

    def _start_metrics_port(self) -> None:
        """``/metrics`` on its own port too, when ``metrics_port`` is set (the chart's
        Service and ServiceMonitor scrape it there), with the sidecar's certificate."""
        settings = self.settings
        if not settings.metrics_port:
            return
        cert, key = settings.http_tls_cert, settings.http_tls_key
        self.metrics_server = MetricsServer(
            self.metrics.registry,
            settings.http_host,
            settings.metrics_port,
            tls=(cert, key) if cert is not None and key is not None else None,
        )
        log.info("metrics on %s", self.metrics_server.url)

    def stop(self) -> None:
        """Stop accepting, then let the worker finish its run and the exporter its send."""
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        if self.http is not None:  # HTTP sidecar hook: first down (no new uploads)
            self.http.stop()
            self.http = None
        if self._started:
            self.gateway.stop()
            self.grouper.stop()
            if self.drift is not None:
                self.drift.stop()
            self.worker.stop()
            self.exporter.stop()
            self._started = False
        if not self.worker.is_alive():  # a run past the stop timeout still needs it
            self.journal.close()

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class WorkerTier(_Appliance):
    """``python -m service worker``: the inference tier alone. Claims jobs from the shared
    journal (leases), runs the pipeline on the shared spool, writes results to the shared
    outputs folder; the ingest tier's exporter sends them (it polls the journal)."""

    def __init__(
        self,
        settings: ServiceSettings,
        pipeline: Runner | None = None,
        metrics: ApplianceMetrics | None = None,
    ) -> None:
        super().__init__(settings, pipeline, metrics)
        self.worker = Worker(settings, self.journal, self.spool, self.pipeline, self.metrics,
                             on_exporting=lambda: None, recorder=self.recorder)  # fmt: skip
        self.metrics_server: MetricsServer | None = None

    def start(self) -> None:
        set_model_info(self.metrics, self.pipeline.model_summary())
        if self.settings.metrics_port:  # the worker's own /metrics (no HTTP sidecar here)
            self.metrics_server = MetricsServer(
                self.metrics.registry, self.settings.http_host, self.settings.metrics_port
            )
        self.worker.start()
        log.info("worker %s: claiming jobs from %s", self.journal.owner, self.journal.description)

    def stop(self) -> None:
        """Let the current run finish (its lease is renewed meanwhile), then close."""
        self.worker.stop()
        if self.metrics_server is not None:
            self.metrics_server.close()
        if not self.worker.is_alive():
            self.journal.close()
