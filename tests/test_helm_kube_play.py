"""The Helm chart's pod, run: the rendered ConfigMap, Secrets and StatefulSet pod template
as Pods under ``podman kube play``, from the appliance image (issue 12: names the chart
set that the service never read).

Three pods: two of one release (the StatefulSet's two replicas, one audit key Secret) and
one of a second release with another audit key. With ``tls.enabled`` and a separate
``metrics.port``, each pod must

* answer C-ECHO over DICOM TLS with the chart's certificate (verified against the test
  CA; a stranger's CA fails) and refuse a plain association;
* answer its readiness and liveness probes as rendered (HTTPS on the ``http`` port,
  verified against the CA), and refuse plain HTTP there;
* serve Prometheus text at the ServiceMonitor's endpoint (the ``metrics`` port, HTTPS);
* take the API token from the secret file in MINIVESS_SECRETS_DIR;
* hash a received study's UID in its audit log with the site key from the Secret: the
  two replicas write the same hash, HMAC-SHA256 of the UID under the given key, and the
  other release a different one; no pod makes a key of its own.

What podman 4.3 cannot run as rendered, and the stand-ins, are in tests/kube_play.py.
Traffic stays on 127.0.0.1 (hostIP). Only the pods these tests create are removed, by
name.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import secrets
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from containers import commands, images
from containers.podman import podman as run_podman
from tests.kube_play import kube_yaml, of_kind, pod_from_statefulset, render
from tests.peers import PEER_ENV, free_port, require_executable, storescu
from tests.security_support import Pki, make_pki
from tests.service_support import make_study
from tests.test_image_container import appliance_image  # noqa: F401  (session fixture)

# A cold image build (~4 min on 2 cores) may happen inside the first test's timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

METRICS_PORT = 9100
READY_TIMEOUT_S = 300  # three pods verify and load the ensemble at once on 2 cores
AUDIT_TIMEOUT_S = 120


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        return run_podman(*args, check=False, timeout=timeout)
    except commands.ContainerBuildError as error:  # podman missing
        pytest.fail(str(error), pytrace=False)


@dataclass
class Pod:
    name: str
    release: str
    audit_key: str  # hex, as in the Secret
    container: str
    ports: dict[str, int]  # container port name -> host port on 127.0.0.1
    workdir: Path
    docs: list[dict[str, Any]]  # the release's rendered manifests

    @property
    def audit_log(self) -> Path:
        return self.workdir / "spool" / "audit" / "audit.jsonl"

    def logs(self) -> str:
        done = podman("logs", "--tail", "60", self.container)
        return done.stdout + done.stderr


def chart_values(image: str, pki: Pki, audit_key: str, token: str) -> dict[str, Any]:
    repository, tag = image.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "dicom": {"quietPeriodSeconds": 1},
        "http": {"enabled": True},
        "metrics": {"port": METRICS_PORT},
        "serviceMonitor": {"enabled": True},
        "tls": {
            "enabled": True,
            "cert": pki.server.cert.read_text(),
            "key": pki.server.key.read_text(),
            "ca": pki.ca.read_text(),
        },
        "secrets": {"apiToken": token, "auditHmacKey": audit_key},
    }


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def token() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def pods(
    appliance_image: images.BuiltImage,  # noqa: F811
    pki: Pki,
    token: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Pod]]:
    """Release A's two replicas and release B's one, played and up (see wait_until_up);
    removed afterwards (only these, by name)."""
    require_executable("echoscu")
    work = tmp_path_factory.mktemp("kube-play")
    run = uuid.uuid4().hex[:6]
    started: list[Pod] = []
    try:
        for release, replicas in ((f"kpa{run}", 2), (f"kpb{run}", 1)):
            key = secrets.token_hex(32)
            docs = render(chart_values(appliance_image.ref, pki, key, token), release)
            (statefulset,) = of_kind(docs, "StatefulSet")
            played = []
            for index in range(replicas):
                name = f"{statefulset['metadata']['name']}-{index}"
                ports = {"dicom": free_port(), "http": free_port(), "metrics": free_port()}
                manifest = pod_from_statefulset(
                    statefulset, name, work / name, ports, of_kind(docs, "Secret")
                )
                container = f"{name}-{manifest['spec']['containers'][0]['name']}"
                played.append(manifest)
                started.append(Pod(name, release, key, container, ports, work / name, docs))
            kube_file = work / f"{release}.yaml"
            kube_file.write_text(kube_yaml(of_kind(docs, "ConfigMap"), played))
            done = podman("kube", "play", str(kube_file), timeout=300)
            if done.returncode != 0 and "catatonit" in done.stderr:
                pytest.fail(
                    "podman's pod infra container needs catatonit: apt-get install catatonit",
                    pytrace=False,
                )
            assert done.returncode == 0, done.stdout + done.stderr
        for pod in started:
            wait_until_up(pod, pki)
        yield started
    finally:
        if started:  # together: they stop in parallel
            names = [pod.name for pod in started]
            podman("pod", "rm", "--force", "--ignore", "--time", "5", *names)


def echo(pod: Pod, extra: list[str]) -> subprocess.CompletedProcess[str]:
    command = [require_executable("echoscu"), "-aec", "MINIVESS", *extra]
    command += ["127.0.0.1", str(pod.ports["dicom"])]
    return subprocess.run(
        command, capture_output=True, text=True, env=PEER_ENV, timeout=60, check=False
    )


def tls_args(pki: Pki, ca: Path | None = None) -> list[str]:
    """dcmtk: TLS without a client certificate, trusting ``ca`` (default: the test CA)."""
    return ["+tla", "+cf", str(ca or pki.ca)]


def wait_until_up(pod: Pod, pki: Pki) -> None:
    """C-ECHO over TLS, then the readiness probe (HTTPS), then the metrics port: the
    service binds them in this order (the metrics port just after the sidecar)."""
    readiness = container_of(pod)["readinessProbe"]["httpGet"]
    ready_url = f"https://127.0.0.1:{pod.ports[readiness['port']]}{readiness['path']}"
    checks = {
        "C-ECHO over TLS": lambda: echo(pod, tls_args(pki)).returncode == 0,
        "readiness probe": lambda: https_status(ready_url, pki) == 200,
        "metrics port": lambda: port_open(pod.ports["metrics"]),
    }
    deadline = time.monotonic() + READY_TIMEOUT_S
    for what, check in checks.items():
        while not check():
            state = podman("inspect", "--format", "{{.State.Status}}", pod.container)
            if state.stdout.strip() != "running" or time.monotonic() > deadline:
                pytest.fail(f"pod {pod.name} is {state.stdout.strip()}, no {what}:\n{pod.logs()}")
            time.sleep(1)


def https_status(url: str, pki: Pki) -> int | None:
    try:
        return https_get(url, pki)[0]
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError):
        return None


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return True
    except OSError:
        return False


def https_get(url: str, pki: Pki, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Status and body of a GET that verifies the server against the test CA."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def plain_get_status(url: str) -> int | None:
    """Status of a plain-HTTP GET; None when the server will not speak plain HTTP."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError):
        return None


def container_of(pod: Pod) -> dict[str, Any]:
    (statefulset,) = of_kind(pod.docs, "StatefulSet")
    (main,) = statefulset["spec"]["template"]["spec"]["containers"]
    return dict(main)


# --------------------------------------------------------------------------------- tests


@pytest.mark.requirement("SRS-063", "SRS-070")
def test_dicom_speaks_tls_only_with_the_charts_certificate(pods: list[Pod], pki: Pki) -> None:
    for pod in pods:
        done = echo(pod, tls_args(pki))
        assert done.returncode == 0, done.stdout + done.stderr
        assert echo(pod, []).returncode != 0, f"{pod.name} answered a plain association"
        # The certificate is checked: a peer that trusts another CA gives up.
        assert echo(pod, tls_args(pki, pki.rogue_ca)).returncode != 0
    # The container runs as the chart says: read-only root, uid 10001, memory limit.
    inspect = json.loads(podman("inspect", pods[0].container).stdout)[0]
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True
    assert inspect["Config"]["User"] == "10001:10001"
    assert inspect["HostConfig"]["Memory"] == 12 * 2**30


@pytest.mark.requirement("SRS-063")
def test_probes_and_metrics_answer_over_https(pods: list[Pod], pki: Pki) -> None:
    for pod in pods:
        main = container_of(pod)
        for probe in ("readinessProbe", "livenessProbe"):
            get = main[probe]["httpGet"]
            assert get["scheme"] == "HTTPS", probe
            address = f"127.0.0.1:{pod.ports[get['port']]}{get['path']}"
            status, body = https_get(f"https://{address}", pki)
            assert status == 200, (pod.name, probe, body, pod.logs())
            assert plain_get_status(f"http://{address}") != 200  # HTTPS only
        # What Prometheus scrapes: the ServiceMonitor's endpoint, on the metrics port.
        (monitor,) = of_kind(pod.docs, "ServiceMonitor")
        (endpoint,) = monitor["spec"]["endpoints"]
        assert (endpoint["port"], endpoint["scheme"]) == ("metrics", "https")
        ports = {p["name"]: p["containerPort"] for p in main["ports"]}
        assert ports["metrics"] == METRICS_PORT
        url = f"https://127.0.0.1:{pod.ports[endpoint['port']]}{endpoint['path']}"
        status, text = https_get(url, pki)
        assert status == 200, (pod.name, text, pod.logs())
        assert "# TYPE minivess_" in text, text[:2000]


def test_the_api_token_comes_from_the_secret_file(pods: list[Pod], pki: Pki, token: str) -> None:
    pod = pods[0]
    url = f"https://127.0.0.1:{pod.ports['http']}/v1/jobs/{uuid.uuid4()}"
    status, body = https_get(url, pki, {"Authorization": f"Bearer {token}"})
    assert status == 404, body  # authenticated: there is no such job
    status, body = https_get(url, pki, {"Authorization": "Bearer not-the-token"})
    assert status == 401, body


def audit_receipts(pod: Pod) -> list[dict[str, Any]]:
    if not pod.audit_log.is_file():
        return []
    entries = [json.loads(line) for line in pod.audit_log.read_text().splitlines() if line]
    return [e for e in entries if e.get("event_type") == "study.received"]


@pytest.mark.requirement("SRS-063")
def test_replicas_hash_identifiers_with_the_site_key_from_the_secret(
    pods: list[Pod], pki: Pki, tmp_path: Path
) -> None:
    study = make_study(tmp_path / "study", seed=91)
    for pod in pods:
        storescu("127.0.0.1", pod.ports["dicom"], "MINIVESS", study.files, tls_args(pki))
    deadline = time.monotonic() + AUDIT_TIMEOUT_S
    receipts = {pod.name: audit_receipts(pod) for pod in pods}
    while not all(receipts.values()) and time.monotonic() < deadline:
        time.sleep(1)
        receipts = {pod.name: audit_receipts(pod) for pod in pods}
    for pod in pods:
        assert receipts[pod.name], f"no study.received in {pod.name}'s audit log:\n{pod.logs()}"
    hashes = {}
    for pod in pods:
        (receipt,) = receipts[pod.name]
        key = bytes.fromhex(pod.audit_key)
        digest = hmac.new(key, study.study_instance_uid.encode(), hashlib.sha256).hexdigest()
        assert receipt["resource"] == f"study:hmac-sha256:{digest}", (pod.name, receipt)
        assert study.study_instance_uid not in json.dumps(receipt)
        hashes[pod.name] = receipt["resource"]
        # The key came from the Secret: the pod made none of its own.
        assert not (pod.workdir / "spool" / "audit" / "site.key").exists()
    first, second, other = (hashes[pod.name] for pod in pods)
    assert pods[0].release == pods[1].release != pods[2].release
    assert first == second != other
