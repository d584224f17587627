"""The Grafana dashboard (helm/minivess/dashboards/minivess.json) against the metrics.

Its shape is checked without servers: the panels the issue asks for, one datasource
variable, every metric it names defined by ApplianceMetrics. Then a study goes through a
real service (dcmtk's storescu in, the shipped ensemble, C-STORE export to Orthanc) while
a real Prometheus scrapes the service's registry, and every panel's PromQL, with Grafana's
variables replaced by concrete values, is evaluated by Prometheus' HTTP API: no error,
and a finite value wherever the study must have produced one (the exceptions are listed
in MAY_BE_EMPTY with the reason).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from map_app.pipeline import Pipeline
from service.app import Service
from service.observability.exposition import MetricsServer
from service.observability.metrics import ApplianceMetrics
from tests.peers import Orthanc, run_orthanc, storescu
from tests.prometheus_support import JOB, prometheus_fixture, query, scalar, wait  # noqa: F401
from tests.service_support import (  # pipeline_fixture: the module's pipeline fixture
    ROOT,
    make_study,
    pipeline_fixture,  # noqa: F401
    settings_for,
    wait_finished,
)

DASHBOARD = ROOT / "helm" / "minivess" / "dashboards" / "minivess.json"
# Grafana's variables as a test run replaces them: the rate window and the time range
# cover the whole test (the service started less than a few minutes ago), $job is the
# scrape job of tests/prometheus_support.py (Grafana's "All" would be ".+").
VARIABLES = {"__rate_interval": "5m", "__range": "1h", "job": JOB}
# The panels the issue names, by title.
REQUIRED_PANELS = {
    "Study latency p50 / p95",
    "Stage latency p95",
    "Studies per hour",
    "Queue depth",
    "Review (OOD) flag rate",
    "Drift share",
    "Exports per hour",
    "Exports dead-lettered",
    "Model version",
    "Result notifications per hour",
    "Routing decisions per hour",
}
# (panel title, legend) of the queries that may return no series after one clean study.
# Every other query must return at least one series, each with a finite value. The
# fixed-set counters (studies, exports, notifications, routing decisions, analysed
# studies) start at 0 for every label value (service.observability.metrics), so their
# panels answer 0, not nothing, before the first event: dead-lettered exports, retries,
# notifications and routing decisions must all answer here although none happened.
MAY_BE_EMPTY = {
    ("Instances received / rejected", "rejected {{reason}}"): (
        "minivess_instances_rejected_total gets a series per (interface, reason) only at "
        "the first refused instance; this study's instances are all accepted"
    ),
}


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, also those inside (collapsed) rows."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def targets(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, legend, PromQL) of every query."""
    return [
        (panel["title"], target.get("legendFormat", target["refId"]), target["expr"])
        for panel in panels(dashboard)
        for target in panel["targets"]
    ]


def concrete(expression: str) -> str:
    """The expression with Grafana's $name, ${name} and [[name]] variables replaced."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        assert name in VARIABLES, f"variable {name} has no test value: {expression}"
        return VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]", value, expression)


def defined_series(metrics: ApplianceMetrics) -> set[str]:
    """Every series name the registry can expose (histogram buckets etc., also unused)."""
    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_count", "_sum"],
        "info": ["_info"],
        "gauge": [""],
    }
    return {
        family.name + suffix
        for family in metrics.registry.collect()
        for suffix in suffixes[family.type]
    }


# ------------------------------------------------------------------ the JSON alone


@pytest.mark.requirement("SRS-048", "SRS-089")
def test_dashboard_has_the_panels_and_one_datasource_variable() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "minivess-appliance"
    found = list(panels(dashboard))
    assert {panel["title"] for panel in found} >= REQUIRED_PANELS
    rows = [panel for panel in dashboard["panels"] if panel["type"] == "row"]
    ids = [panel["id"] for panel in rows + found]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in found:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(target["datasource"]["uid"] == "${datasource}" for target in panel["targets"])
        assert panel["description"], panel["title"]
    # Every dashboard variable a query uses is one the test replaces.
    for _, _, expression in targets(dashboard):
        assert "$" not in concrete(expression)


@pytest.mark.requirement("SRS-048", "SRS-089")
def test_every_metric_on_the_dashboard_is_defined() -> None:
    dashboard = load_dashboard()
    defined = defined_series(ApplianceMetrics()) | {"up"}
    used = {
        name
        for _, _, expression in targets(dashboard)
        for name in re.findall(r"\b(minivess_\w+|up)\b", expression)
    }
    (job,) = [v for v in dashboard["templating"]["list"] if v["name"] == "job"]
    used |= set(re.findall(r"label_values\((\w+), job\)", job["definition"]))
    assert used <= defined, sorted(used - defined)
    # The notification and routing counters are there before anything increments them.
    assert {"minivess_notifications_total", "minivess_routing_decisions_total"} <= used


# ------------------------------------------------------- against a real Prometheus


@pytest.fixture(name="pacs")
def pacs_fixture(tmp_path: Path) -> Iterator[Orthanc]:
    with run_orthanc(tmp_path / "pacs", aet="PACS") as server:
        yield server


@pytest.fixture(name="service")
def service_fixture(tmp_path: Path, pipeline: Pipeline, pacs: Orthanc) -> Iterator[Service]:
    destination = {"host": "127.0.0.1", "port": pacs.dicom_port, "ae_title": pacs.aet}
    settings = settings_for(tmp_path / "var", export_destinations=[destination])
    with Service(settings, pipeline=pipeline) as running:
        yield running


@pytest.fixture(name="metrics")
def service_metrics_fixture(service: Service) -> Iterator[tuple[ApplianceMetrics, MetricsServer]]:
    """The running service's registry on its own /metrics port (the server class the
    service uses for ``metrics_port``): what the ``prometheus`` fixture scrapes."""
    with MetricsServer(service.metrics.registry, "127.0.0.1", 0) as server:
        yield service.metrics, server


@pytest.mark.peer
@pytest.mark.slow
@pytest.mark.requirement("SRS-048", "SRS-089")
def test_every_panel_query_answers_after_a_study(
    service: Service, prometheus: str, pipeline: Pipeline, tmp_path: Path
) -> None:
    done = 'minivess_studies_total{outcome="done"}'
    wait("the first scrape", lambda: scalar(prometheus, done) == 0.0)
    study = make_study(tmp_path / "study", seed=41)
    storescu("127.0.0.1", service.gateway.port, "MINIVESS", study.files)
    job = wait_finished(service.journal, study.study_instance_uid, timeout=180)
    assert job.state == "done", job.error
    wait(
        "a scrape after the study",
        lambda: (
            scalar(prometheus, done) == 1.0 and scalar(prometheus, "minivess_queue_depth") == 0.0
        ),
    )

    answers: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for title, legend, expression in targets(load_dashboard()):
        result = query(prometheus, concrete(expression))  # asserts status "success"
        answers[title, legend] = result
        if (title, legend) in MAY_BE_EMPTY:
            continue
        assert result, f"{title} / {legend}: no series for {concrete(expression)}"
        for series in result:
            value = float(series["value"][1])
            assert math.isfinite(value), f"{title} / {legend}: {series} ({expression})"
    assert set(MAY_BE_EMPTY) <= set(answers)  # the exceptions name real queries

    # A few values the one study fixes.
    (version,) = answers["Model version", "{{name}} {{version}}"]
    assert version["metric"]["version"] == pipeline.model_summary().version
    (queued,) = answers["Queue depth", "jobs"]
    assert float(queued["value"][1]) == 0.0
    per_outcome = {s["metric"]["outcome"]: float(s["value"][1]) for s in
                   answers["Studies per hour", "{{outcome}}"]}  # fmt: skip
    assert per_outcome["done"] > 0 and per_outcome["failed"] == 0
    exports = {s["metric"]["outcome"]: float(s["value"][1]) for s in
               answers["Exports per hour", "{{outcome}}"]}  # fmt: skip
    assert exports["ok"] > 0 and exports["retried"] == exports["dead_lettered"] == 0
    stages = {s["metric"]["stage"] for s in answers["Stage latency p95", "{{stage}}"]}
    assert {"receive", "inference", "uncertainty", "write", "export"} <= stages
    notifications = answers["Result notifications per hour", "{{channel}} {{outcome}}"]
    assert len(notifications) == 6 and all(float(s["value"][1]) == 0 for s in notifications)
    (rate,) = answers["Review flag rate", "flagged"]
    assert 0.0 <= float(rate["value"][1]) <= 1.0
