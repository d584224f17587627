"""What the Helm chart tests share (tests/test_helm_chart.py,
tests/test_helm_chart_values.py, tests/test_helm_chart_settings.py): the chart, its
values sets, rendering with Helm (``bundle.helm``) and finding things in what it rendered. A
test module imports ``rendered_fixture`` to get the ``rendered`` fixture (every values
set rendered once per module).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bundle import helm

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "minivess"
VALUES_FILES = {path.stem: path for path in sorted((CHART / "ci").glob("*-values.yaml"))}
VALUE_SETS = ["defaults", *VALUES_FILES]
RELEASE, NAMESPACE = "site", "imaging"
FULLNAME = f"{RELEASE}-minivess"
TLS_DIR, SECRETS_DIR = "/etc/minivess/tls", "/etc/minivess/settings-secrets"


def values(name: str) -> dict[str, Any]:
    if name == "defaults":
        return {}
    return helm.values_from_yaml(VALUES_FILES[name].read_text())


def render(
    overrides: dict[str, Any], release: str = RELEASE, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """The chart's manifests for ``overrides`` (NOTES.txt left out)."""
    rendered = helm.render(CHART, overrides, name=release, namespace=namespace)
    docs = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


@pytest.fixture(scope="module", name="rendered")
def rendered_fixture() -> dict[str, list[dict[str, Any]]]:
    """Every values set rendered (a test module that imports this fixture gets its own)."""
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
