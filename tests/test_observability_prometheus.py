"""A real Prometheus server (Debian package ``prometheus``) scrapes ApplianceMetrics.

Fails, never skips, when the binary is missing: the observability contract is only tested
against the real thing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from operators.run_report import ModelSummary
from service.observability.exposition import MetricsServer
from service.observability.metrics import ApplianceMetrics, set_model_info

# 90 studies in the (1, 2] s bucket, 10 in (5, 10] s: the 95th percentile is in (5, 10],
# 5 + (95 - 90) / 10 * 5 = 7.5 s by histogram_quantile's linear interpolation.
LATENCIES = [1.5] * 90 + [7.0] * 10
P95_QUERY = "histogram_quantile(0.95, sum(rate(minivess_study_latency_seconds_bucket[1m])) by (le))"


def _prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None
    )
    if found is None:
        pytest.fail("the prometheus server binary is missing: apt-get install prometheus")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _ready(base: str, process: subprocess.Popen[bytes], tmp_path: Path) -> bool:
    if process.poll() is not None:
        log = (tmp_path / "prometheus.log").read_text()
        pytest.fail(f"prometheus exited with {process.returncode}:\n{log}")
    with urllib.request.urlopen(f"{base}/-/ready", timeout=5) as response:
        return bool(response.status == 200)


def _wait(what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def metrics() -> Iterator[tuple[ApplianceMetrics, MetricsServer]]:
    appliance = ApplianceMetrics()
    with MetricsServer(appliance.registry, "127.0.0.1", 0) as server:
        yield appliance, server


@pytest.fixture
def prometheus(tmp_path: Path, metrics: tuple[ApplianceMetrics, MetricsServer]) -> Iterator[str]:
    binary = _prometheus_binary()
    _, server = metrics
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: minivess\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{server.port}']\n"
    )
    port = _free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait("prometheus to be ready", lambda: _ready(base, process, tmp_path))
        yield base
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _query(base: str, expression: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    answer = _get(url)
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def _scalar(base: str, expression: str) -> float | None:
    result = _query(base, expression)
    return float(result[0]["value"][1]) if result else None


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
    _wait(
        "the first scrape",
        lambda: _scalar(prometheus, "minivess_study_latency_seconds_count") == 0.0,
    )
    for seconds in LATENCIES:
        appliance.study_seconds.observe(seconds)
    appliance.instances_received.labels(interface="dimse").inc(12)
    appliance.instances_received.labels(interface="http").inc(3)
    _wait(
        "a scrape after the studies",
        lambda: _scalar(prometheus, "minivess_study_latency_seconds_count") == len(LATENCIES),
    )

    assert _scalar(prometheus, 'up{job="minivess"}') == 1.0
    p95 = _scalar(prometheus, P95_QUERY)
    assert p95 is not None and 5.0 < p95 <= 10.0, p95
    assert p95 == pytest.approx(7.5, rel=1e-6)
    p50 = _scalar(prometheus, P95_QUERY.replace("0.95", "0.5"))
    assert p50 is not None and 1.0 < p50 <= 2.0, p50

    received = {
        r["metric"]["interface"]: float(r["value"][1])
        for r in _query(prometheus, "minivess_instances_received_total")
    }
    assert received == {"dimse": 12.0, "http": 3.0}
    (info,) = _query(prometheus, "minivess_model_info")
    assert info["metric"]["version"] == "1.0.0"
    assert info["metric"]["name"] == "minivess-vessel-ensemble"
    assert float(info["value"][1]) == 1.0
