"""The chart's Grafana dashboard ConfigMap (templates/grafana-dashboard.yaml).

It is off by default, and when on it carries the sidecar's label and, byte for byte,
the one dashboard source helm/minivess/dashboards/minivess.json (read with .Files.Get,
also from the packaged chart the offline bundle ships). Rendering and linting are Helm's
own code (helm-python-sdk, tests/helm_support.py); the ConfigMap passes
kubernetes-validate --strict. What the dashboard's queries answer:
tests/test_observability_dashboard.py.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from bundle import helm
from tests.helm_support import CHART, FULLNAME, NAMESPACE, RELEASE, render

SOURCE = CHART / "dashboards" / "minivess.json"
NAME = f"{FULLNAME}-dashboard"
# kubectl apply (client side) copies an object into its last-applied annotation, which
# Kubernetes limits to 256 KiB: a dashboard ConfigMap above that cannot be applied so.
ANNOTATION_LIMIT = 262144


def dashboards(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == NAME]


@pytest.mark.requirement("SRS-063", "SRS-089")
def test_dashboard_configmap_is_off_by_default() -> None:
    assert dashboards(render({})) == []


@pytest.mark.requirement("SRS-063", "SRS-089")
def test_dashboard_configmap_has_the_sidecar_label_and_the_same_json() -> None:
    (config_map,) = dashboards(render({"grafanaDashboard": {"enabled": True}}))
    metadata = config_map["metadata"]
    assert metadata["namespace"] == NAMESPACE
    assert metadata["labels"]["grafana_dashboard"] == "1"
    assert metadata["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert "annotations" not in metadata
    assert list(config_map["data"]) == ["minivess.json"]
    text = config_map["data"]["minivess.json"]
    assert text == SOURCE.read_text().strip()  # the source itself, not a copy or a re-dump
    assert json.loads(text)["uid"] == "minivess-appliance"
    assert len(json.dumps(config_map)) < ANNOTATION_LIMIT
    for version in ("1.27.0", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(config_map, version, strict=True)


@pytest.mark.requirement("SRS-063", "SRS-089")
def test_dashboard_namespace_label_and_folder_annotation_from_values() -> None:
    overrides = {
        "grafanaDashboard": {
            "enabled": True,
            "namespace": "monitoring",
            "label": "grafana.example/dashboard",
            "labelValue": "minivess",
            "annotations": {"grafana_folder": "MinIVess"},
        }
    }
    (config_map,) = dashboards(render(overrides))
    metadata = config_map["metadata"]
    assert metadata["namespace"] == "monitoring"
    assert metadata["labels"]["grafana.example/dashboard"] == "minivess"
    assert "grafana_dashboard" not in metadata["labels"]
    assert metadata["annotations"] == {"grafana_folder": "MinIVess"}
    report = helm.lint(str(CHART), overrides)
    assert not report["errors"] and not [m for m in report["messages"] if m["severity"] >= 2]


def test_schema_refuses_bad_dashboard_values() -> None:
    bad = {"grafanaDashboard": {"enabled": "yes", "label": "not a label", "folder": "x"}}
    report = helm.lint(str(CHART), bad)
    text = json.dumps(report["errors"])
    assert "/grafanaDashboard/enabled" in text and "/grafanaDashboard/label" in text
    assert "folder" in text  # no such key (additionalProperties: false)


@pytest.mark.requirement("SRS-063", "SRS-089")
def test_packaged_chart_carries_and_renders_the_dashboard(tmp_path: Path) -> None:
    """The chart as the offline bundle ships it (helm package) holds the dashboard."""
    archive = helm.package(str(CHART), destination=str(tmp_path))
    with tarfile.open(archive) as tar:
        member = tar.extractfile("minivess/dashboards/minivess.json")
        assert member is not None and member.read() == SOURCE.read_bytes()
    rendered = helm.render(
        archive, {"grafanaDashboard": {"enabled": True}}, name=RELEASE, namespace=NAMESPACE
    )
    text = rendered["minivess/templates/grafana-dashboard.yaml"]
    assert '"uid": "minivess-appliance"' in text
