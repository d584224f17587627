"""The chart's second deployment shape (issue 16): scaleOut.enabled renders the ingest tier
(the StatefulSet, no local worker, no GPU) and a worker Deployment (the GPU, `worker`),
both on an external PostgreSQL journal and one ReadWriteMany claim, with the workers
scaled by KEDA on the journal's queue or by an HPA on minivess_queue_depth. Off by
default. Rendered offline (tests/helm_support.py); the ci values set
helm/minivess/ci/scaleout-values.yaml also runs through every chart test of
tests/test_helm_chart*.py (strict lint, kubernetes-validate, settings)."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bundle import helm
from service.settings import load_settings
from tests.helm_support import FULLNAME, one, pod_environment, render, values

REPO = Path(__file__).resolve().parents[1]
SCALED = values("scaleout-values")
KEDA = "keda.sh/v1alpha1"


def with_values(**changes: Any) -> dict[str, Any]:
    merged = copy.deepcopy(SCALED)
    for key, value in changes.items():
        merged["scaleOut"][key] = {**merged["scaleOut"].get(key, {}), **value}
    return merged


def workload_env(docs: list[dict[str, Any]], kind: str, tmp: Path) -> dict[str, str]:
    """The MINIVESS_* environment of the StatefulSet's or the Deployment's pods, with
    their settings-secrets volume written to ``tmp`` (helm_support.pod_environment reads
    the StatefulSet: the Deployment is swapped in for it)."""
    others = [d for d in docs if d["kind"] not in ("StatefulSet", "Deployment")]
    return pod_environment([*others, {**one(docs, kind), "kind": "StatefulSet"}], tmp)


def test_off_by_default() -> None:
    docs = render({})
    assert not [d for d in docs if d["kind"] == "Deployment" or d.get("apiVersion") == KEDA]
    assert "volumeClaimTemplates" in one(docs, "StatefulSet")["spec"]
    assert "MINIVESS_JOURNAL_URL" not in one(docs, "ConfigMap")["data"]


def test_ingest_tier_and_workers_share_the_journal_and_the_volume(tmp_path: Path) -> None:
    docs = render(SCALED)
    gateway, workers = one(docs, "StatefulSet"), one(docs, "Deployment", f"{FULLNAME}-workers")
    assert "volumeClaimTemplates" not in gateway["spec"]
    claims = set()
    for workload in (gateway, workers):
        spec = workload["spec"]["template"]["spec"]
        (main,) = spec["containers"]
        mount = next(m for m in main["volumeMounts"] if m["mountPath"] == "/var/lib/minivess")
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        claims.add(volume["persistentVolumeClaim"]["claimName"])
    assert claims == {"minivess-shared"}
    (ingest,) = gateway["spec"]["template"]["spec"]["containers"]
    (worker,) = workers["spec"]["template"]["spec"]["containers"]
    assert (ingest["args"], worker["args"]) == (["serve"], ["worker"])
    # The GPU goes to the workers only: the ingest tier runs no inference.
    assert "nvidia.com/gpu" not in ingest["resources"]["limits"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["image"].endswith("-gpu") and not ingest["image"].endswith("-gpu")
    # Both tiers' settings load as the pods see them: the journal URL, its password from
    # the secret file, the local worker off in the ingest tier only.
    for kind, local_worker in (("StatefulSet", False), ("Deployment", True)):
        env = workload_env(docs, kind, tmp_path / kind)
        settings = load_settings(environ=env)
        assert settings.journal_url == "postgresql://minivess@journal-db.imaging.svc:5432/minivess"
        assert settings.journal_password is not None
        assert settings.journal_password.get_secret_value() == "journal-s3cret"
        assert settings.local_worker is local_worker
        assert str(settings.var_dir) == "/var/lib/minivess"


def test_no_service_budget_or_policy_of_the_ingest_tier_selects_a_worker() -> None:
    docs = render(SCALED)
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selectors = [d["spec"]["selector"] for d in docs if d["kind"] == "Service"]
    selectors += [one(docs, "StatefulSet")["spec"]["selector"]["matchLabels"],
                  one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                  one(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]]  # fmt: skip
    for selector in selectors:
        assert not selector.items() <= labels.items(), selector
    hpa = one(docs, "HorizontalPodAutoscaler", f"{FULLNAME}-workers")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": f"{FULLNAME}-workers"}  # fmt: skip
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] == "minivess_queue_depth"
    assert "replicas" not in one(docs, "Deployment")["spec"]  # the autoscaler's


def test_keda_scales_workers_on_the_journals_queue(tmp_path: Path) -> None:
    docs = render(with_values(autoscaling={"kind": "keda", "jobsPerWorker": 3},
                              journal={"url": "postgresql://mv@db.example/journal"}))  # fmt: skip
    scaled = one(docs, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"] == {"name": f"{FULLNAME}-workers"}
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 3)
    (trigger,) = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "postgresql"
    assert (meta["host"], meta["port"], meta["userName"], meta["dbName"]) == (
        "db.example", "5432", "mv", "journal")  # fmt: skip
    assert meta["targetQueryValue"] == "3" and "FROM jobs" in meta["query"]
    auth = one(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    (ref,) = auth["spec"]["secretTargetRef"]
    secret = one(docs, "Secret", ref["name"])
    assert ref["parameter"] == "password" and ref["key"] in secret["data"]
    # Everything but KEDA's own kinds (CRDs: no schema here) validates strictly.
    files = []
    for index, doc in enumerate(d for d in docs if d["apiVersion"] != KEDA):
        files.append(tmp_path / f"{index:02d}.yaml")
        files[-1].write_text(yaml.safe_dump(doc))
    for version in ("1.27.0", kubernetes_validate.latest_version()):
        done = subprocess.run(
            [str(REPO / ".venv" / "bin" / "kubernetes-validate"), "--strict", "-k", version,
             *map(str, files)], capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"journal": {"url": ""}}, "needs scaleOut.journal.url"),
        ({"sharedStorage": {"existingClaim": ""}}, "needs scaleOut.sharedStorage.existingClaim"),
    ],
)
def test_what_scaling_out_needs_is_asked_for(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render(with_values(**changes))


def test_schema_refuses_a_password_in_the_url_and_unknown_autoscalers() -> None:
    for bad in (with_values(journal={"url": "postgresql://mv:pw@db/journal"}),
                with_values(autoscaling={"kind": "vpa"})):  # fmt: skip
        report = helm.lint(str(REPO / "helm" / "minivess"), bad)
        assert report["errors"], report
