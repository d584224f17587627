"""The Helm chart: strict lint, offline render and strict schema validation of every
rendered manifest for several values sets, and the chart as the offline bundle ships it.

helm-python-sdk (Helm's own Go code) lints and renders; ``kubernetes-validate --strict``
validates every rendered manifest against the Kubernetes OpenAPI schemas of the oldest
supported and newer Kubernetes versions, rejecting unknown fields. What each values set
renders: tests/test_helm_chart_values.py; the settings and secrets the pod gets:
tests/test_helm_chart_settings.py; what they share: tests/helm_support.py.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bundle import helm
from tests.helm_support import (
    CHART,
    NAMESPACE,
    RELEASE,
    REPO,
    VALUE_SETS,
    one,
    rendered_fixture,  # noqa: F401  (the rendered fixture)
    values,
)

KUBE_VALIDATE = REPO / ".venv" / "bin" / "kubernetes-validate"
# The chart's kubeVersion floor, a middle release and the newest schema shipped.
KUBE_VERSIONS = ["1.27.0", "1.30.0", kubernetes_validate.latest_version()]
# Prometheus Operator custom resources: kubernetes-validate has no schema for CRD kinds
# (it only warns "Couldn't find schema"), so these two are skipped there explicitly and
# checked by test_monitoring_resources (tests/test_helm_chart_values.py) instead.
# Anything else must validate.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


# ------------------------------------------------------------------- lint and validate


@pytest.mark.requirement("SRS-063")
@pytest.mark.parametrize("name", VALUE_SETS)
def test_strict_lint(name: str) -> None:
    report = helm.lint(str(CHART), values(name))
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], json.dumps(report, indent=2)


def test_lint_rejects_values_outside_the_schema() -> None:
    bad = {"dicom": {"aeTitle": "X" * 17}, "securityContext": {"readOnlyRootFilesystem": False}}
    report = helm.lint(str(CHART), bad)
    text = json.dumps(report["errors"])
    assert "aeTitle" in text and "readOnlyRootFilesystem" in text


def test_helm_runs_in_its_own_process_and_reports_its_refusals() -> None:
    """Helm's Go runtime stays out of this process (bundle/helm.py says why)."""
    assert helm.values_from_yaml("a: 1") == {"a": 1}
    maps = Path("/proc/self/maps").read_text()
    assert "libhelm_c" not in maps, "helm_python was imported into the test process"
    with pytest.raises(helm.HelmError, match="Error"):
        helm.render(CHART.parent / "no-such-chart", {}, name=RELEASE, namespace=NAMESPACE)


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


def test_chart_app_version_is_the_appliance_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert chart["appVersion"] == pyproject["project"]["version"]


def test_packaged_chart_leaves_out_the_test_values(tmp_path: Path) -> None:
    """The chart as the offline bundle ships it: ci/ stays out (.helmignore)."""
    archive = helm.package(str(CHART), destination=str(tmp_path))
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    assert Path(archive).name == f"minivess-{version}.tgz"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "minivess/values.schema.json" in names and "minivess/templates/statefulset.yaml" in names
    assert not any("/ci/" in name for name in names)
    assert helm.render(archive, {}, name=RELEASE, namespace=NAMESPACE)
