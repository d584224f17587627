"""Helpers for tests/test_helm_kube_play.py (no tests here): the Helm chart's rendered
StatefulSet pod template as Pods that ``podman kube play`` (podman 4.3, Debian 12) runs.

A Pod keeps from the template its metadata (labels, annotations), the container's image,
args, env, envFrom (the rendered ConfigMap, played by podman), ports, volume mounts and
securityContext (read-only root, no capabilities, no privilege escalation, uid 10001),
and the pod's securityContext, as rendered. What changes, and why:

* Secret volumes are projected by the test as the kubelet projects them: one file per
  key (or per ``items`` entry, under its ``path``) with the Secret's decoded bytes, mode
  ``defaultMode`` and group ``fsGroup``, in a folder mounted read-only (hostPath).
  podman 4.3 cannot do it: its secret volumes hold the base64 text of ``data`` instead
  of the bytes (``stringData`` gives empty files), ignore ``items`` and ``defaultMode``,
  panic without an explicit ``optional``, and outlive the pod as podman secrets and
  volumes. So the rendered Secrets are read here, not handed to podman;
* the volumeClaimTemplate ``spool`` and the emptyDirs become folders of their own per
  pod (no PVCs here; podman 4.3 makes an emptyDir a named volume called like the volume,
  which every pod with that volume name would share). A mount with ``subPath`` gets its
  own folder (podman 4.3 ignores ``subPath`` on hostPath volumes);
* each containerPort gets a hostPort on 127.0.0.1 (``hostIP``): nothing listens beyond
  the loopback interface;
* probes are dropped: podman turns them into healthcheck commands run inside the
  container by systemd timers (no systemd here, no curl in the image). The test calls
  the probes' endpoints itself, with their scheme, as the kubelet would;
* ``restartPolicy: Never``: a pod that crashes stays down with its logs;
* annotations longer than 63 characters (``checksum/env``, which only rolls a
  StatefulSet's pods) are dropped: podman 4.3 applies the label length limit to them.

Fields podman ignores (serviceAccountName, affinity, ...) are left in.
"""

from __future__ import annotations

import base64
import copy
import os
from pathlib import Path
from typing import Any

import yaml

from tests import helm_support

Doc = dict[str, Any]


def render(values: dict[str, Any], release: str, namespace: str = "kube-play") -> list[Doc]:
    """The chart's manifests (NOTES.txt left out) for ``values``."""
    return helm_support.render(values, release, namespace)


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def _folder(path: Path) -> dict[str, Any]:
    """A hostPath volume on a new folder the container's user (uid 10001) can write."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return {"hostPath": {"path": str(path), "type": "Directory"}}


def project_secret(source: dict[str, Any], secret: Doc, folder: Path, fs_group: int | None) -> None:
    """The files the kubelet writes for a secret volume ``source`` of ``secret``."""
    data = {k: base64.b64decode(v) for k, v in secret.get("data", {}).items()}
    items = source.get("items") or [{"key": key, "path": key} for key in data]
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    for item in items:
        path = folder / item["path"]
        path.write_bytes(data[item["key"]])  # a missing key fails, as in Kubernetes
        if fs_group is not None:
            os.chown(path, 0, fs_group)
        path.chmod(item.get("mode", source.get("defaultMode", 0o644)))


def pod_from_statefulset(
    statefulset: Doc,
    name: str,
    workdir: Path,
    host_ports: dict[str, int],
    secrets: list[Doc],
) -> Doc:
    """Pod ``name`` from the StatefulSet's template, its volumes as folders under
    ``workdir`` (see the module docstring)."""
    template = copy.deepcopy(statefulset["spec"]["template"])
    spec = template["spec"]
    fs_group = spec.get("securityContext", {}).get("fsGroup")
    by_name = {s["metadata"]["name"]: s for s in secrets}
    volumes: dict[str, Doc] = {}
    for volume in spec["volumes"]:
        folder = workdir / volume["name"]
        if "secret" in volume:
            source = volume["secret"]
            project_secret(source, by_name[source["secretName"]], folder, fs_group)
            volumes[volume["name"]] = {"hostPath": {"path": str(folder), "type": "Directory"}}
        elif "emptyDir" in volume:
            volumes[volume["name"]] = _folder(folder)
        else:
            raise AssertionError(f"no stand-in for volume {volume}")
    claims = [claim["metadata"]["name"] for claim in statefulset["spec"]["volumeClaimTemplates"]]
    assert claims == ["spool"], claims
    volumes["spool"] = _folder(workdir / "spool")
    (container,) = spec["containers"]
    for mount in container["volumeMounts"]:
        volume, sub = mount["name"], mount.pop("subPath", None)
        if sub:  # its own folder, inside the volume's as in Kubernetes
            mount["name"] = f"{volume}-{sub}"
            volumes[mount["name"]] = _folder(workdir / volume / sub)
    used = {mount["name"] for mount in container["volumeMounts"]}
    spec["volumes"] = [{"name": key, **value} for key, value in volumes.items() if key in used]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        container.pop(probe, None)
    for port in container["ports"]:
        port["hostIP"] = "127.0.0.1"
        port["hostPort"] = host_ports[port["name"]]
    spec["restartPolicy"] = "Never"
    metadata = copy.deepcopy(template.get("metadata", {}))
    metadata["name"] = name
    metadata["annotations"] = {
        k: v for k, v in metadata.get("annotations", {}).items() if len(v) <= 63
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def kube_yaml(config_maps: list[Doc], pods: list[Doc]) -> str:
    """One YAML stream for ``podman kube play``: the ConfigMaps, then the Pods."""
    docs = []
    for doc in [*config_maps, *pods]:
        doc = copy.deepcopy(doc)
        doc["metadata"].pop("namespace", None)
        docs.append(doc)
    return yaml.safe_dump_all(docs, sort_keys=False)
