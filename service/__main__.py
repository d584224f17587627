"""``python -m service``: run the appliance service and look after its jobs.

    python -m service [--config FILE] serve               gateway + worker + exporter + HTTP
    python -m service [--config FILE] worker              the inference tier alone
    python -m service [--config FILE] jobs [--state S]... list jobs (newest first)
    python -m service [--config FILE] show JOB_ID         one job as JSON
    python -m service [--config FILE] retry-export JOB_ID re-send a dead-lettered job
    python -m service [--config FILE] settings            effective settings (JSON)

``serve`` is the whole appliance on one host; with ``local_worker=false`` it is the ingest
tier alone, and ``worker`` processes (any number, any host) claim the jobs from the shared
``journal_url`` (PostgreSQL) and process them on the shared ``var_dir`` (spool, outputs).

``retry-export`` writes to the journal; a running service picks the job up within a
second. Exit codes: 0 ok, 1 cannot start (a port taken, ...), 2 bad arguments, 3 unknown
job / wrong state / no journal, 78 bad settings (sysexits EX_CONFIG: an unknown
``MINIVESS_*`` name, a malformed value, a TLS certificate without its key, a missing file;
all checked before the models load), or a pipeline error's own code.
Logs name jobs, studies and instances by their UIDs only, never patient attributes.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from service.journal import Journal
from service.settings import ServiceSettings, SettingsError, load_settings
from settings.base import EXIT_CONFIG
from settings.registry import check_environment

log = logging.getLogger("service")


def setup_logging(settings: ServiceSettings) -> None:
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    console = logging.StreamHandler(sys.stderr)
    logfile = logging.handlers.RotatingFileHandler(
        settings.logs_dir / "service.log", maxBytes=10 * 2**20, backupCount=5
    )
    root = logging.getLogger()
    root.setLevel(settings.log_level.upper())
    for handler in (console, logfile):
        handler.setFormatter(formatter)
        root.addHandler(handler)
    # pynetdicom's INFO/DEBUG lines dump PDUs and data sets: keep them out of the logs.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("highdicom").setLevel(logging.WARNING)  # per-module chatter


def preflight(settings: ServiceSettings) -> None:
    """Raise SettingsError for what would fail later: missing files, TLS material that
    does not load, a pipeline config that does not validate. Runs before the models load."""
    import ssl

    from map_app.config import load_config
    from service.export import notification_channels
    from service.tls import client_context, server_context

    missing = settings.missing_files()
    if missing:
        raise SettingsError(f"file(s) named in the settings are missing: {'; '.join(missing)}")
    server_context(settings)
    if any(destination.tls for destination in settings.export_destinations):
        client_context(settings)
    if settings.http_tls_cert is not None and settings.http_tls_key is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                settings.http_tls_cert, settings.http_tls_key
            )
        except (ssl.SSLError, OSError) as error:
            raise SettingsError(f"cannot load the HTTP TLS certificate/key: {error}") from error
    load_config(settings.pipeline_config)
    from service.routing import Router

    Router.from_settings(settings)  # the rule file parses and names known destinations
    try:
        notification_channels(settings)  # e.g. a fhir_tls_ca that is no CA file
    except (ssl.SSLError, OSError) as error:
        raise SettingsError(f"cannot load fhir_tls_ca: {error}") from error


def serve(settings: ServiceSettings) -> int:
    from operators.errors import PipelineError
    from service.app import Service  # imports the pipeline stack only when serving

    setup_logging(settings)
    preflight(settings)
    stop = threading.Event()

    def on_signal(number: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", number)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        service = Service(settings, http=True)
        service.start()
    except PipelineError as error:  # e.g. a model file that fails its SHA-256 check
        log.error("cannot start: %s", error.message)
        return error.exit_code
    except (OSError, RuntimeError) as error:  # e.g. the DICOM or HTTP port is taken
        log.error("cannot start: %s", error)
        return 1
    mode = " (dev mode: no API auth)" if settings.dev_mode else ""
    http_port = service.http.port if service.http is not None else settings.http_port
    log.info("service ready%s: DICOM %s@%s:%d, HTTP http://%s:%d, var %s", mode,
             settings.ae_title, settings.dicom_host, service.gateway.port, settings.http_host,
             http_port, settings.var_dir)  # fmt: skip
    if not settings.dev_mode and settings.api_token is None:
        log.warning("no api_token configured: the HTTP API (/v1, /dicomweb) refuses all "
                    "requests (403); set MINIVESS_API_TOKEN")  # fmt: skip
    # Wait on an event, never inside a blocking pynetdicom server (SIGTERM deadlock).
    while not stop.wait(1.0):
        pass
    service.stop()
    log.info("service stopped")
    return 0


def run_worker(settings: ServiceSettings) -> int:
    """The inference tier: claim, process, hand over to the ingest tier's export."""
    from operators.errors import PipelineError
    from service.app import WorkerTier

    setup_logging(settings)
    preflight(settings)
    if settings.journal_url is None:
        log.warning("worker on the SQLite journal %s: only processes of this host may share "
                    "it (set journal_url to scale out)", settings.journal_path)  # fmt: skip
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda number, frame: stop.set())
    signal.signal(signal.SIGINT, lambda number, frame: stop.set())
    try:
        tier = WorkerTier(settings)
        tier.start()
    except PipelineError as error:
        log.error("cannot start: %s", error.message)
        return error.exit_code
    except (OSError, RuntimeError) as error:  # the journal database unreachable, a port
        log.error("cannot start: %s", error)
        return 1
    while not stop.wait(1.0):
        pass
    log.info("worker stopping: the current run finishes first")
    tier.stop()
    return 0


def _journal(settings: ServiceSettings) -> Journal:
    if settings.journal_url is None and not settings.journal_path.is_file():
        raise KeyError(f"no journal at {settings.journal_path} (has the service run?)")
    return Journal.from_settings(settings)


def list_jobs(settings: ServiceSettings, states: list[str] | None, as_json: bool) -> int:
    jobs = _journal(settings).list_jobs(tuple(states) if states else None)
    if as_json:
        print(json.dumps([job.model_dump() for job in jobs], indent=2))
        return 0
    print(f"{'job id':32}  {'state':11}  {'inst':>5}  {'runs':>4}  {'exp':>3}  error")
    for job in jobs:
        print(f"{job.job_id:32}  {job.state:11}  {job.instances:5d}  {job.attempts:4d}  "
              f"{job.export_attempts:3d}  {job.error or ''}")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, help="service config file (JSON or TOML)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the DICOM gateway, worker and exporter")
    commands.add_parser("worker", help="run the inference tier alone (shared journal_url)")
    jobs = commands.add_parser("jobs", help="list jobs")
    jobs.add_argument("--state", action="append", help="only jobs in this state (repeatable)")
    jobs.add_argument("--json", action="store_true")
    commands.add_parser("show", help="one job as JSON").add_argument("job_id")
    commands.add_parser("retry-export", help="re-send a job's results").add_argument("job_id")
    commands.add_parser("settings", help="print the effective settings")
    args = parser.parse_args(argv)
    try:
        check_environment()
        settings = load_settings(args.config)
        if args.command in ("serve", "worker"):
            from map_app.stack import ensure_holoscan_stack

            ensure_holoscan_stack("service")
            return serve(settings) if args.command == "serve" else run_worker(settings)
        if args.command == "jobs":
            return list_jobs(settings, args.state, args.json)
        if args.command == "settings":
            print(settings.model_dump_json(indent=2))
            return 0
        journal = _journal(settings)
        if args.command == "show":
            job = journal.get(args.job_id)
            if job is None:
                print(f"no job {args.job_id}", file=sys.stderr)
                return 3
            print(job.model_dump_json(indent=2))
            return 0
        job = journal.retry_export(args.job_id)
        print(f"job {job.job_id}: {job.state}, export re-triggered")
        return 0
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except (KeyError, ValueError) as error:
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
