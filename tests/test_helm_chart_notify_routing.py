"""The Helm chart's notification and routing values (issue 14, items 4 and 5): off by
default; when set, the pod's settings name the FHIR server (its token a secret file), the
RIS and the mounted rule file, and the rule file the chart writes loads and names a
destination the chart configured. Rendered offline (tests/helm_support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundle import helm
from service.routing import Router, load_rules
from service.settings import load_settings
from tests.helm_support import FULLNAME, container, one, pod_environment, pod_spec, render

RULES = {
    "rules": [
        {"name": "stat", "when": {"calling_ae": "ER_*"}, "priority": "stat"},
        {"name": "research", "when": {"StudyDescription": "RESEARCH*"}, "action": "route",
         "destination": "RESEARCH"},
    ],
}  # fmt: skip
VALUES = {
    "dicom": {"exportDestinations": [
        {"host": "pacs", "port": 104, "aeTitle": "PACS"},
        {"host": "archive", "port": 104, "aeTitle": "RESEARCH", "results": False},
    ]},
    "notifications": {"fhir": {"baseUrl": "https://ehr.hospital.local/fhir"},
                      "hl7": {"host": "ris.hospital.local", "port": 2576}},
    "secrets": {"fhirAuthToken": "fhir-t0ken"},
    "routing": {"rules": RULES},
}  # fmt: skip


def test_off_by_default() -> None:
    docs = render({})
    env = one(docs, "ConfigMap")["data"]
    assert not {k for k in env if "FHIR" in k or "HL7" in k or "ROUTING" in k}
    assert "fhir-auth-token" not in one(docs, "Secret")["data"]


def test_notifications_and_routing_reach_the_pod(tmp_path: Path) -> None:
    docs = render(VALUES)
    env_docs = [d for d in docs if d["metadata"]["name"] != f"{FULLNAME}-routing"]
    env = pod_environment(env_docs, tmp_path / "settings-secrets")
    assert env["MINIVESS_ROUTING_RULES"] == "/etc/minivess/routing/rules.yaml"
    # The rule file as the pod sees it: the routing ConfigMap mounted at /etc/minivess/routing.
    routing = one(docs, "ConfigMap", f"{FULLNAME}-routing")
    mounts = {m["name"]: m["mountPath"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert mounts["routing"] == "/etc/minivess/routing"
    assert volumes["routing"]["configMap"]["name"] == f"{FULLNAME}-routing"
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(routing["data"]["rules.yaml"])
    assert load_rules(rules_file).model_dump(exclude_defaults=True)["rules"][1]["destination"] == (
        "RESEARCH"
    )  # fmt: skip
    settings = load_settings(environ={**env, "MINIVESS_ROUTING_RULES": str(rules_file)})
    assert settings.fhir_base_url == "https://ehr.hospital.local/fhir"
    assert settings.fhir_auth_token is not None
    assert settings.fhir_auth_token.get_secret_value() == "fhir-t0ken"
    assert (settings.hl7_host, settings.hl7_port) == ("ris.hospital.local", 2576)
    assert [d.results for d in settings.export_destinations] == [True, False]
    assert Router.from_settings(settings).destinations == {"RESEARCH": "RESEARCH@archive:104"}


def test_bad_notification_values_are_refused() -> None:
    with pytest.raises(helm.HelmError, match="baseUrl"):
        render({"notifications": {"fhir": {"baseUrl": "ehr.hospital.local"}}})
    with pytest.raises(helm.HelmError, match="port"):
        render({"notifications": {"hl7": {"host": "ris", "port": 0}}})
