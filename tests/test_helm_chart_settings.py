"""The Helm chart: the settings and secrets the pod gets. Every MINIVESS_* variable the
chart sets is read by the service's or the pipeline's settings, the API token and audit
key arrive as files, tls.enabled turns on DICOM TLS and HTTPS everywhere, and the names
chart 0.1.0 set without a reader are refused and documented. Rendered offline with
helm-python-sdk (tests/helm_support.py).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from bundle import helm
from map_app.config import AppConfig, load_config
from service.settings import ServiceSettings, load_settings
from settings.base import ENV_PREFIX, SECRETS_DIR_ENV
from tests.helm_support import (
    CHART,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    REPO,
    SECRETS_DIR,
    TLS_DIR,
    VALUE_SETS,
    config_env,
    container,
    one,
    pod_environment,
    pod_spec,
    render,
    rendered_fixture,  # noqa: F401  (the rendered fixture)
)

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
    with pytest.raises(helm.HelmError, match=r"tls\.cert"):
        render({"tls": {"enabled": True}})
    # The audit key must be one the key reader accepts (hex, at least 128 bits).
    for bad in ("k3y", key[:-2]):
        with pytest.raises(helm.HelmError, match="auditHmacKey"):
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
    with pytest.raises(helm.HelmError, match=old) as refused:
        render({"extraEnv": {old: "/etc/minivess/tls/tls.crt"}})
    for new in RENAMED[old]:
        assert new in str(refused.value)


def test_notes_and_readme_list_the_renamed_settings() -> None:
    notes = helm.render(CHART, TLS_VALUES, name=RELEASE, namespace=NAMESPACE)[
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
