"""The Helm chart: strict lint, offline render and strict schema validation of every
rendered manifest for several values sets, and the properties a site relies on.

helm-python-sdk (Helm's own Go code) lints and renders; ``kubernetes-validate --strict``
validates every rendered manifest against the Kubernetes OpenAPI schemas of the oldest
supported and newer Kubernetes versions, rejecting unknown fields.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from map_app.config import AppConfig, load_config
from service.settings import ServiceSettings, load_settings
from settings.base import ENV_PREFIX, SECRETS_DIR_ENV

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "minivess"
VALUES_FILES = {path.stem: path for path in sorted((CHART / "ci").glob("*-values.yaml"))}
VALUE_SETS = ["defaults", *VALUES_FILES]
KUBE_VALIDATE = REPO / ".venv" / "bin" / "kubernetes-validate"
# The chart's kubeVersion floor, a middle release and the newest schema shipped.
KUBE_VERSIONS = ["1.27.0", "1.30.0", kubernetes_validate.latest_version()]
# Prometheus Operator custom resources: kubernetes-validate has no schema for CRD kinds
# (it only warns "Couldn't find schema"), so these two are skipped there explicitly and
# checked by test_monitoring_resources below instead. Anything else must validate.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
RELEASE, NAMESPACE = "site", "imaging"
FULLNAME = f"{RELEASE}-minivess"
# What the pod reads: a field of the service's or the pipeline's settings, or the folder
# of secret files that every settings model reads (settings/base.py).
POD_SETTINGS = {
    model.env_name(field) for model in (ServiceSettings, AppConfig) for field in model.model_fields
} | {SECRETS_DIR_ENV}
# What chart 0.1.0 set and nothing read (issue 12); the chart refuses them in extraEnv.
RENAMED = {
    "MINIVESS_TLS_CERT_FILE": ["MINIVESS_DICOM_TLS_CERT", "MINIVESS_HTTP_TLS_CERT"],
    "MINIVESS_TLS_KEY_FILE": ["MINIVESS_DICOM_TLS_KEY", "MINIVESS_HTTP_TLS_KEY"],
    "MINIVESS_TLS_CA_FILE": ["MINIVESS_DICOM_TLS_CA"],
    "MINIVESS_AUDIT_KEY": ["MINIVESS_AUDIT_HMAC_KEY_FILE"],
    "MINIVESS_RELEASE_PUBLIC_KEY": [],
}
TLS_DIR, SECRETS_DIR = "/etc/minivess/tls", "/etc/minivess/settings-secrets"


def values(name: str) -> dict[str, Any]:
    if name == "defaults":
        return {}
    return helm_python.values_from_yaml(VALUES_FILES[name].read_text())


def render(overrides: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm_python.Chart.load(str(CHART))
    rendered = chart.render(overrides, name=RELEASE, namespace=NAMESPACE)
    docs = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(values(name)) for name in VALUE_SETS}


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "StatefulSet")["spec"]["template"]["spec"]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (main,) = pod_spec(docs)["containers"]
    return main


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# ------------------------------------------------------------------- lint and validate


@pytest.mark.requirement("SRS-063")
@pytest.mark.parametrize("name", VALUE_SETS)
def test_strict_lint(name: str) -> None:
    report = helm_python.lint(str(CHART), values(name), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], json.dumps(report, indent=2)


def test_lint_rejects_values_outside_the_schema() -> None:
    bad = {"dicom": {"aeTitle": "X" * 17}, "securityContext": {"readOnlyRootFilesystem": False}}
    report = helm_python.lint(str(CHART), bad, strict=True)
    text = json.dumps(report["errors"])
    assert "aeTitle" in text and "readOnlyRootFilesystem" in text


@pytest.mark.requirement("SRS-063")
def test_every_rendered_manifest_passes_kubernetes_validate_strict(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    files: list[Path] = []
    skipped: set[tuple[str, str]] = set()
    for name, docs in rendered.items():
        for index, doc in enumerate(docs):
            if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
                skipped.add((doc["apiVersion"], doc["kind"]))  # see CRD_KINDS
                continue
            path = tmp_path / name / f"{index:02d}-{doc['kind']}.yaml"
            path.parent.mkdir(exist_ok=True)
            path.write_text(yaml.safe_dump(doc))
            files.append(path)
    assert skipped == CRD_KINDS  # the monitoring values set renders both
    for version in KUBE_VERSIONS:
        done = subprocess.run(
            [str(KUBE_VALIDATE), "--strict", "-k", version, *map(str, files)],
            capture_output=True,
            text=True,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        passed = [
            line for line in output.splitlines() if line.startswith("INFO") and "passed" in line
        ]
        # Every file validated against a schema: nothing was let through with a warning.
        assert len(passed) == len(files), output


def test_kubernetes_validate_strict_rejects_unknown_fields(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    statefulset = json.loads(json.dumps(one(rendered["defaults"], "StatefulSet")))
    statefulset["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBE_VERSIONS[1], strict=True)


# ---------------------------------------------------------------------- the properties


def test_chart_app_version_is_the_appliance_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert chart["appVersion"] == pyproject["project"]["version"]


@pytest.mark.requirement("SRS-063")
def test_defaults(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["defaults"]
    assert kinds(docs) == sorted(
        [
            "ConfigMap",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Secret",
            "Service",
            "Service",
            "Service",
            "ServiceAccount",
            "StatefulSet",
        ]
    )
    statefulset = one(docs, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 2
    assert statefulset["spec"]["serviceName"] == f"{FULLNAME}-headless"
    # A persistent spool per pod, kept when pods go away.
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "spool"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    main = container(docs)
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert mounts["/var/lib/minivess"] == "spool" and mounts["/tmp"] == "tmp"
    assert main["image"] == "localhost/minivess-appliance:0.1.0"
    assert main["args"] == ["serve"]
    # Security: non-root, read-only root, no capabilities, RuntimeDefault seccomp.
    spec = pod_spec(docs)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    security = main["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # Replicas prefer different nodes.
    term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    # Probes: DICOM port for start-up, the sidecar's /readyz and /livez afterwards.
    assert main["startupProbe"]["tcpSocket"] == {"port": "dicom"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    # Plain DICOM and HTTP without tls.enabled; the API token is a file, not an env value.
    env = one(docs, "ConfigMap")["data"]
    assert not [key for key in env if "TLS" in key]
    assert "MINIVESS_METRICS_PORT" not in env
    assert [e["name"] for e in main["env"]] == ["POD_NAME"]
    assert env["MINIVESS_SECRETS_DIR"] == SECRETS_DIR
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"dicom": 11112, "http": 3000}
    # No GPU anywhere unless asked for.
    assert not any(isinstance(n, dict) and "nvidia.com/gpu" in n for n in walk(docs))
    assert "runtimeClassName" not in spec and "tolerations" not in spec
    # DICOM and HTTP Services keep a client on one pod.
    dicom = one(docs, "Service", f"{FULLNAME}-dicom")
    http = one(docs, "Service", f"{FULLNAME}-http")
    for service in (dicom, http):
        assert service["spec"]["sessionAffinity"] == "ClientIP"
        assert service["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] > 0
    assert [p["port"] for p in dicom["spec"]["ports"]] == [11112]
    assert [p["port"] for p in http["spec"]["ports"]] == [3000]
    # NetworkPolicy on by default: no PACS configured, so no way into the DICOM port.
    policy = one(docs, "NetworkPolicy")
    for rule in policy["spec"]["ingress"]:
        assert 11112 not in [p["port"] for p in rule["ports"]]
    # Generated secrets are there and kept on uninstall.
    secret = one(docs, "Secret")
    assert secret["data"]["api-token"] and secret["data"]["audit-hmac-key"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # The generated audit key is one the audit log's key reader accepts: 256 bits, hex.
    key = base64.b64decode(secret["data"]["audit-hmac-key"]).decode()
    assert len(bytes.fromhex(key)) == 32
    assert env["MINIVESS_AUDIT_HMAC_KEY_FILE"] == "/etc/minivess/secrets/audit-hmac-key"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert (
        volumes[mounts["/etc/minivess/secrets"]]["secret"]["secretName"]
        == secret["metadata"]["name"]
    )


def config_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The ConfigMap's variables without MINIVESS_SECRETS_DIR, whose folder is a volume
    of the pod that is not here (``pod_environment`` makes one)."""
    env = one(docs, "ConfigMap")["data"]
    return {k: v for k, v in env.items() if k != "MINIVESS_SECRETS_DIR"}


def pod_environment(docs: list[dict[str, Any]], secrets_dir: Path) -> dict[str, str]:
    """The container's MINIVESS_* environment as the pod sees it, with MINIVESS_SECRETS_DIR
    pointing at a copy of the settings-secrets volume (its items, from the chart's Secret)
    in ``secrets_dir``."""
    main, spec = container(docs), pod_spec(docs)
    env = dict(one(docs, "ConfigMap")["data"])
    env |= {e["name"]: e["value"] for e in main["env"] if "value" in e}
    mount = next(m for m in main["volumeMounts"] if m["mountPath"] == env["MINIVESS_SECRETS_DIR"])
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])["secret"]
    secret = one(docs, "Secret", volume["secretName"])
    secrets_dir.mkdir(parents=True, exist_ok=True)
    for item in volume["items"]:
        (secrets_dir / item["path"]).write_bytes(base64.b64decode(secret["data"][item["key"]]))
    return env | {"MINIVESS_SECRETS_DIR": str(secrets_dir)}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_settings_from_the_chart_are_valid_service_settings(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    """Every MINIVESS_* variable the chart sets is read: a field of the service's or the
    pipeline's settings, or the secret-files folder (POD_SETTINGS). The ConfigMap loads
    into both models. None of the names chart 0.1.0 set without a reader is left."""
    docs = rendered[name]
    main = container(docs)
    env = one(docs, "ConfigMap")["data"]
    names = set(env) | {e["name"] for e in main["env"]}
    for key in sorted(n for n in names if n.startswith(ENV_PREFIX)):
        assert key in POD_SETTINGS, f"the chart sets {key} and no settings model reads it"
    assert not names & set(RENAMED)
    assert "MINIVESS_API_TOKEN" not in names  # a file in MINIVESS_SECRETS_DIR instead
    load_config(environ=config_env(docs))
    settings = load_settings(environ=config_env(docs))
    assert settings.dicom_host == "0.0.0.0" and settings.dicom_port == 11112
    assert str(settings.var_dir) == "/var/lib/minivess"
    assert str(settings.model_dir) == "/opt/holoscan/models/minivess-vessel-ensemble"
    assert str(settings.audit_key_file) == "/etc/minivess/secrets/audit-hmac-key"


def test_the_api_token_reaches_the_service_as_a_secret_file(tmp_path: Path) -> None:
    """The settings-secrets volume holds the Secret's api-token as MINIVESS_API_TOKEN, and
    the service's settings read it from MINIVESS_SECRETS_DIR."""
    docs = render({"secrets": {"apiToken": "t0ken-from-the-secret"}})
    main = container(docs)
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert mounts[SECRETS_DIR]["readOnly"] is True
    assert not [e for e in main["env"] if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]]
    env = pod_environment(docs, tmp_path / "settings-secrets")
    settings = load_settings(environ=env)
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "t0ken-from-the-secret"


@pytest.mark.requirement("SRS-063")
def test_gpu_monitoring_autoscaling(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["gpu-monitoring-values"]
    main, spec = container(docs), pod_spec(docs)
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert main["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert main["resources"]["limits"]["memory"] == "24Gi"
    assert main["image"].endswith(":0.1.0-gpu")
    assert spec["runtimeClassName"] == "nvidia"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    # The HPA owns the replica count.
    assert "replicas" not in one(docs, "StatefulSet")["spec"]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": FULLNAME,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    metric_names = [m.get("pods", {}).get("metric", {}).get("name") for m in hpa["spec"]["metrics"]]
    assert "minivess_queue_depth" in metric_names
    dicom = one(docs, "Service", f"{FULLNAME}-dicom")
    assert dicom["spec"]["type"] == "LoadBalancer"
    assert dicom["spec"]["externalTrafficPolicy"] == "Local"
    tls = one(docs, "Secret", f"{FULLNAME}-tls")
    assert tls["type"] == "kubernetes.io/tls" and "ca.crt" not in tls["data"]
    assert TLS_DIR in [m["mountPath"] for m in main["volumeMounts"]]
    env = one(docs, "ConfigMap")["data"]
    assert "MINIVESS_DICOM_TLS_CERT" in env and "MINIVESS_DICOM_TLS_CA" not in env  # no CA


def test_monitoring_resources(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The CRD kinds kubernetes-validate cannot check: their fields and their wiring."""
    docs = rendered["gpu-monitoring-values"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "tlsConfig"}
    assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"
    # The monitor's selector matches the HTTP Service, which has the named port.
    http = one(docs, "Service", f"{FULLNAME}-http")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= http["metadata"]["labels"].items()
    assert endpoint["port"] in [p["name"] for p in http["spec"]["ports"]]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}

    rule = one(docs, "PrometheusRule")
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    p95 = alerts["MinivessStudyLatencyP95High"]
    expr = " ".join(p95["expr"].split())
    assert expr.startswith("histogram_quantile(0.95, sum by (le) (rate(")
    assert f'minivess_study_latency_seconds_bucket{{namespace="{NAMESPACE}", ' in expr
    assert f'service="{FULLNAME}-http"}}[30m]' in expr
    assert expr.endswith("> 300")
    assert p95["for"] == "15m" and p95["labels"]["severity"]
    for alert in alerts.values():
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}
        assert alert["expr"].count("(") == alert["expr"].count(")")
    # Every metric an alert uses is one the service defines.
    metrics = (REPO / "service/observability/metrics.py").read_text()
    for name in (
        "minivess_study_latency_seconds",
        "minivess_queue_depth",
        "minivess_exports_total",
        "minivess_studies_total",
    ):
        assert f'"{name}"' in metrics


@pytest.mark.requirement("SRS-063")
def test_network_policy_admits_only_the_pacs_networks(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["networkpolicy-values"]
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "minivess",
        "app.kubernetes.io/instance": RELEASE,
    }
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    dicom_rules = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == 11112]
    (rule,) = dicom_rules
    assert rule["ports"] == [{"port": 11112, "protocol": "TCP"}]
    cidrs = [peer["ipBlock"]["cidr"] for peer in rule["from"] if "ipBlock" in peer]
    assert cidrs == ["10.20.0.0/24", "192.168.5.17/32"]
    others = [peer for peer in rule["from"] if "ipBlock" not in peer]
    assert others == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dicom-routers"}}}
    ]
    # The HTTP rule does not open the DICOM port to anyone else.
    for other in policy["spec"]["ingress"]:
        if other is not rule:
            assert 11112 not in [p["port"] for p in other["ports"]]
    egress_cidrs = [
        p["ipBlock"]["cidr"]
        for r in policy["spec"]["egress"]
        for p in r.get("to", [])
        if "ipBlock" in p
    ]
    assert {"10.20.0.0/24", "192.168.5.17/32", "10.0.9.0/24"} <= set(egress_cidrs)
    # The gateway's AE allowlist and export destinations, in the service's format.
    settings = load_settings(environ=config_env(docs))
    assert settings.ae_title == "VESSELSEG"
    assert [(p.ae_title, p.ip) for p in settings.allowlist] == [
        ("PACS1", "10.20.0.15/32"),
        ("ROUTER", "192.168.5.17/32"),
    ]
    assert [d.name for d in settings.export_destinations] == ["PACS1@pacs.hospital.local:104"]
    # Hard anti-affinity; a NodePort that keeps the PACS address.
    anti = pod_spec(docs)["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == (
        "kubernetes.io/hostname"
    )
    dicom = one(docs, "Service", f"{FULLNAME}-dicom")
    assert dicom["spec"]["type"] == "NodePort"
    assert dicom["spec"]["ports"][0]["nodePort"] == 31112
    assert dicom["spec"]["externalTrafficPolicy"] == "Local"
    assert one(docs, "ConfigMap")["data"]["MINIVESS_OVERLAP"] == "0.5"


@pytest.mark.requirement("SRS-063")
def test_existing_secrets_digest_and_no_http(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["existing-secret-values"]
    assert "Secret" not in kinds(docs)  # nothing secret comes from the chart
    assert "ServiceAccount" not in kinds(docs) and "PodDisruptionBudget" not in kinds(docs)
    main, spec = container(docs), pod_spec(docs)
    assert main["image"] == (
        "registry.hospital.local/minivess/appliance@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
    assert spec["imagePullSecrets"] == [{"name": "hospital-registry"}]
    assert spec["serviceAccountName"] == "default"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == "site-minivess-secrets"
    # The site's Secret's api-token, as the file MINIVESS_SECRETS_DIR/MINIVESS_API_TOKEN.
    assert volumes["settings-secrets"]["secret"]["secretName"] == "site-minivess-secrets"
    assert volumes["settings-secrets"]["secret"]["items"] == [
        {"key": "api-token", "path": "MINIVESS_API_TOKEN"}
    ]
    assert volumes["tls"]["secret"]["secretName"] == "site-minivess-tls"
    # TLS from the site's Secret: DICOM and HTTPS settings; its CA only when declared.
    env = one(docs, "ConfigMap")["data"]
    assert env["MINIVESS_DICOM_TLS_CERT"] == env["MINIVESS_HTTP_TLS_CERT"] == f"{TLS_DIR}/tls.crt"
    assert "MINIVESS_DICOM_TLS_CA" not in env
    tls_with_ca = {
        "enabled": True,
        "existingSecret": "site-minivess-tls",
        "existingSecretHasCA": True,
    }
    with_ca = render({**values("existing-secret-values"), "tls": tls_with_ca})
    assert one(with_ca, "ConfigMap")["data"]["MINIVESS_DICOM_TLS_CA"] == f"{TLS_DIR}/ca.crt"
    # Without the HTTP port, every probe is on the DICOM port; no HTTP Service.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["tcpSocket"] == {"port": "dicom"}, probe
    assert [p["name"] for p in main["ports"]] == ["dicom"]
    services = [d["metadata"]["name"] for d in docs if d["kind"] == "Service"]
    assert services == [f"{FULLNAME}-dicom", f"{FULLNAME}-headless"]
    assert "affinity" not in spec
    (claim,) = one(docs, "StatefulSet")["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"


def test_given_secret_values_are_used_and_tls_needs_a_certificate() -> None:
    key = "00112233445566778899aabbccddeeff"
    docs = render(
        {
            "secrets": {
                "apiToken": "s3cret",
                "auditHmacKey": key,
                "releasePublicKey": "-----BEGIN PUBLIC KEY-----\n",
            }
        }
    )
    data = one(docs, "Secret")["data"]
    assert base64.b64decode(data["api-token"]) == b"s3cret"
    assert base64.b64decode(data["audit-hmac-key"]) == key.encode()
    assert base64.b64decode(data["release-public-key.pem"]).startswith(b"-----BEGIN PUBLIC")
    # The public key is a file for `bundle verify`, not a setting.
    assert "MINIVESS_RELEASE_PUBLIC_KEY" not in one(docs, "ConfigMap")["data"]
    with pytest.raises(helm_python.HelmError, match=r"tls\.cert"):
        render({"tls": {"enabled": True}})
    # The audit key must be one the key reader accepts (hex, at least 128 bits).
    for bad in ("k3y", key[:-2]):
        with pytest.raises(helm_python.HelmError, match="auditHmacKey"):
            render({"secrets": {"auditHmacKey": bad}})


TLS_VALUES: dict[str, Any] = {
    "tls": {"enabled": True, "cert": "CERT", "key": "KEY", "ca": "CA"},
    "metrics": {"port": 9100},
    "serviceMonitor": {"enabled": True},
}


def test_tls_turns_on_dicom_tls_and_https_everywhere() -> None:
    """tls.enabled: the DICOM and HTTP TLS settings name the mounted Secret's files, the
    separate metrics port is set, and the probes and the ServiceMonitor speak HTTPS."""
    docs = render(TLS_VALUES)
    env = one(docs, "ConfigMap")["data"]
    settings = load_settings(environ=config_env(docs))
    assert str(settings.dicom_tls_cert) == str(settings.http_tls_cert) == f"{TLS_DIR}/tls.crt"
    assert str(settings.dicom_tls_key) == str(settings.http_tls_key) == f"{TLS_DIR}/tls.key"
    assert str(settings.dicom_tls_ca) == f"{TLS_DIR}/ca.crt"
    assert env["MINIVESS_METRICS_PORT"] == "9100"
    assert settings.model_dump()["metrics_port"] == 9100
    tls = one(docs, "Secret", f"{FULLNAME}-tls")
    assert sorted(tls["data"]) == ["ca.crt", "tls.crt", "tls.key"]
    main = container(docs)
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes[mounts[TLS_DIR]]["secret"]["secretName"] == f"{FULLNAME}-tls"
    assert main["startupProbe"]["tcpSocket"] == {"port": "dicom"}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        assert main[probe]["httpGet"] == {"path": path, "port": "http", "scheme": "HTTPS"}
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"dicom": 11112, "http": 3000, "metrics": 9100}
    (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["scheme"]) == ("metrics", "https")
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": False}
    http = one(docs, "Service", f"{FULLNAME}-http")
    assert {"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"} in http[
        "spec"
    ]["ports"]
    # A site's tlsConfig for Prometheus (its CA, the name in the certificate) is passed on.
    ca = {"secret": {"name": "site-ca", "key": "ca.crt"}}
    monitored = render({**TLS_VALUES, "serviceMonitor": {"enabled": True, "tlsConfig": {
        "ca": ca, "serverName": "minivess.imaging.svc"}}})  # fmt: skip
    (endpoint,) = one(monitored, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["tlsConfig"] == {
        "insecureSkipVerify": False,
        "ca": ca,
        "serverName": "minivess.imaging.svc",
    }


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_renamed_settings_are_refused_in_extra_env(old: str) -> None:
    """A site still setting a name nothing reads learns the new one at install."""
    with pytest.raises(helm_python.HelmError, match=old) as refused:
        render({"extraEnv": {old: "/etc/minivess/tls/tls.crt"}})
    for new in RENAMED[old]:
        assert new in str(refused.value)


def test_notes_and_readme_list_the_renamed_settings() -> None:
    chart = helm_python.Chart.load(str(CHART))
    notes = chart.render(TLS_VALUES, name=RELEASE, namespace=NAMESPACE)[
        "minivess/templates/NOTES.txt"
    ]
    readme = (REPO / "helm" / "README.md").read_text()
    for text in (notes, readme):
        section = text[text.index("Renamed settings") :]
        for old, new in RENAMED.items():
            line = next(line for line in section.splitlines() if old in line)
            assert all(name in line for name in new), line
            assert new or "removed" in line
        assert "MINIVESS_SECRETS_DIR" in section
    assert "echoscu +tla +cf" in notes  # the C-ECHO hint speaks TLS when the port does


def test_packaged_chart_leaves_out_the_test_values(tmp_path: Path) -> None:
    """The chart as the offline bundle ships it: ci/ stays out (.helmignore)."""
    archive = helm_python.package(str(CHART), destination=str(tmp_path))
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    assert Path(archive).name == f"minivess-{version}.tgz"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "minivess/values.schema.json" in names and "minivess/templates/statefulset.yaml" in names
    assert not any("/ci/" in name for name in names)
    assert helm_python.Chart.load(archive).render({}, name=RELEASE, namespace=NAMESPACE)
