"""A real Prometheus server (Debian package ``prometheus``) scrapes ApplianceMetrics.

Fails, never skips, when the binary is missing: the observability contract is only tested
against the real thing. The server and its helpers: tests/prometheus_support.py.
"""

from __future__ import annotations

import pytest

from operators.run_report import ModelSummary
from service.observability.exposition import MetricsServer
from service.observability.metrics import ApplianceMetrics, set_model_info
from tests.prometheus_support import (  # the *_fixture names: this module's fixtures
    metrics_fixture,  # noqa: F401
    prometheus_fixture,  # noqa: F401
    query,
    scalar,
    wait,
)

# 90 studies in the (1, 2] s bucket, 10 in (5, 10] s: the 95th percentile is in (5, 10],
# 5 + (95 - 90) / 10 * 5 = 7.5 s by histogram_quantile's linear interpolation.
LATENCIES = [1.5] * 90 + [7.0] * 10
P95_QUERY = "histogram_quantile(0.95, sum(rate(minivess_study_latency_seconds_bucket[1m])) by (le))"


@pytest.mark.requirement("SRS-048")
def test_prometheus_scrapes_latency_quantile_counters_and_model_info(
    metrics: tuple[ApplianceMetrics, MetricsServer], prometheus: str
) -> None:
    appliance, _ = metrics
    set_model_info(
        appliance,
        ModelSummary(
            name="minivess-vessel-ensemble",
            version="1.0.0",
            providers=["CPUExecutionProvider"],
            members={"unet-a": "0" * 64},
        ),
    )
    # A first scrape with zero studies, so rate() sees the increase that follows.
    wait(
        "the first scrape",
        lambda: scalar(prometheus, "minivess_study_latency_seconds_count") == 0.0,
    )
    for seconds in LATENCIES:
        appliance.study_seconds.observe(seconds)
    appliance.instances_received.labels(interface="dimse").inc(12)
    appliance.instances_received.labels(interface="http").inc(3)
    wait(
        "a scrape after the studies",
        lambda: scalar(prometheus, "minivess_study_latency_seconds_count") == len(LATENCIES),
    )

    assert scalar(prometheus, 'up{job="minivess"}') == 1.0
    p95 = scalar(prometheus, P95_QUERY)
    assert p95 is not None and 5.0 < p95 <= 10.0, p95
    assert p95 == pytest.approx(7.5, rel=1e-6)
    p50 = scalar(prometheus, P95_QUERY.replace("0.95", "0.5"))
    assert p50 is not None and 1.0 < p50 <= 2.0, p50

    received = {
        r["metric"]["interface"]: float(r["value"][1])
        for r in query(prometheus, "minivess_instances_received_total")
    }
    assert received == {"dimse": 12.0, "http": 3.0}
    (info,) = query(prometheus, "minivess_model_info")
    assert info["metric"]["version"] == "1.0.0"
    assert info["metric"]["name"] == "minivess-vessel-ensemble"
    assert float(info["value"][1]) == 1.0
