"""The Helm chart: what each values set renders, the properties a site relies on
(security, probes, Services, NetworkPolicy, GPU, autoscaling, monitoring, a site's own
Secrets and registry). Rendered offline with helm-python-sdk (tests/helm_support.py).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from service.settings import load_settings
from tests.helm_support import (
    FULLNAME,
    NAMESPACE,
    RELEASE,
    REPO,
    SECRETS_DIR,
    TLS_DIR,
    config_env,
    container,
    kinds,
    one,
    pod_spec,
    render,
    rendered_fixture,  # noqa: F401  (the rendered fixture)
    values,
    walk,
)


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
