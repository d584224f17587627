"""A real Prometheus server (Debian package ``prometheus``) for the observability tests
(tests/test_observability_prometheus.py, tests/test_observability_dashboard.py): no tests
here.

``metrics_fixture`` (name ``metrics``) serves a fresh ApplianceMetrics' ``/metrics`` on a
free loopback port; ``prometheus_fixture`` (name ``prometheus``) starts Prometheus
scraping whatever the ``metrics`` fixture serves every second (job ``minivess``) and
yields its base URL. A module imports both, or defines its own ``metrics`` fixture (a
``(ApplianceMetrics, MetricsServer)`` pair, e.g. a running service's registry) and imports
``prometheus_fixture`` only. The binary missing fails, never skips: the observability
contract is only tested against the real thing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.observability.exposition import MetricsServer
from service.observability.metrics import ApplianceMetrics
from tests.peers import free_port

JOB = "minivess"  # the scrape job's name: the label job="minivess" of every scraped series


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None
    )
    if found is None:
        pytest.fail("the prometheus server binary is missing: apt-get install prometheus")
    return found


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _ready(base: str, process: subprocess.Popen[bytes], tmp_path: Path) -> bool:
    if process.poll() is not None:
        log = (tmp_path / "prometheus.log").read_text()
        pytest.fail(f"prometheus exited with {process.returncode}:\n{log}")
    with urllib.request.urlopen(f"{base}/-/ready", timeout=5) as response:
        return bool(response.status == 200)


def wait(what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """``check()``'s first truthy value; connection errors count as not yet."""
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


@pytest.fixture(name="metrics")
def metrics_fixture() -> Iterator[tuple[ApplianceMetrics, MetricsServer]]:
    appliance = ApplianceMetrics()
    with MetricsServer(appliance.registry, "127.0.0.1", 0) as server:
        yield appliance, server


@pytest.fixture(name="prometheus")
def prometheus_fixture(
    tmp_path: Path, metrics: tuple[ApplianceMetrics, MetricsServer]
) -> Iterator[str]:
    binary = prometheus_binary()
    _, server = metrics
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{server.port}']\n"
    )
    port = free_port()
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
        wait("prometheus to be ready", lambda: _ready(base, process, tmp_path))
        yield base
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def query(base: str, expression: str) -> list[dict[str, Any]]:
    """The result vector of an instant query (/api/v1/query); fails on any error."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    answer = get_json(url)
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def scalar(base: str, expression: str) -> float | None:
    result = query(base, expression)
    return float(result[0]["value"][1]) if result else None
