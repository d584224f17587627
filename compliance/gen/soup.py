"""The SOUP list, generated from ``uv.lock`` (IEC 62304 5.3.3, 7.1.2, 8.1.2).

Names and versions come from the lock, licences from the installed distributions'
metadata, purpose / risk class / verification from ``soup_curation.yaml`` for direct
dependencies; a transitive package is described through the direct dependencies that
pull it in ("transitive of X"), inheriting their highest risk class. The list records the
lock's SHA-256, so it is stale as soon as the lock changes.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from compliance.gen.data import DATA_DIR, REPO_ROOT

LOCK = REPO_ROOT / "uv.lock"
CURATION = DATA_DIR / "soup_curation.yaml"
SOUP_JSON = DATA_DIR / "soup.json"
RISK_ORDER = {"low": 0, "medium": 1, "high": 2}


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def licence_of(name: str) -> str:
    """The licence from installed metadata: License-Expression, License, or classifiers."""
    try:
        meta = metadata.metadata(name)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"
    if expression := (meta.get_all("License-Expression") or [""])[0]:
        return str(expression)
    text = str((meta.get_all("License") or [""])[0]).strip()
    if text and len(text) <= 80 and "\n" not in text:
        return text
    classifiers = [
        c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")
    ]
    if classifiers:
        return " / ".join(classifiers)
    return "see distribution (long licence text)" if text else "unknown"


def _closure(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for dep in graph.get(stack.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return seen


def _graph(packages: list[dict[str, Any]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    optional = {_norm(p["name"]): p.get("optional-dependencies", {}) for p in packages}
    for package in packages:
        deps: set[str] = set()
        for dep in package.get("dependencies", []):
            deps.add(_norm(dep["name"]))
            for extra in dep.get("extra", []):
                deps |= {
                    _norm(d["name"]) for d in optional.get(_norm(dep["name"]), {}).get(extra, [])
                }
        graph[_norm(package["name"])] = deps
    return graph


def _describe(parents: Iterable[str]) -> str:
    names = sorted(parents)
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"transitive of {shown}"


def generate(lock_path: Path = LOCK, curation_path: Path = CURATION) -> dict[str, Any]:
    """The SOUP list as a JSON-able dict; raises ValueError for uncurated direct deps."""
    lock_bytes = lock_path.read_bytes()
    lock = tomllib.loads(lock_bytes.decode())
    curation = yaml.safe_load(curation_path.read_text())
    curated: dict[str, dict[str, str]] = {_norm(k): v for k, v in curation["packages"].items()}
    root = next(p for p in lock["package"] if "virtual" in p["source"] or "editable" in p["source"])
    groups: dict[str, str] = {_norm(d["name"]): "runtime" for d in root.get("dependencies", [])}
    for group, deps in root.get("dev-dependencies", {}).items():
        for dep in deps:
            groups.setdefault(_norm(dep["name"]), group)
    missing = sorted(name for name in groups if name not in curated)
    if missing:
        raise ValueError(
            f"direct dependencies without a curated purpose in {curation_path}: "
            + ", ".join(missing)
        )
    packages = [p for p in lock["package"] if p is not root]
    graph = _graph(lock["package"])
    parents: dict[str, set[str]] = {}
    for direct in groups:
        for dep in _closure(direct, graph):
            parents.setdefault(dep, set()).add(direct)
    items = []
    for package in sorted(packages, key=lambda p: _norm(p["name"])):
        name = _norm(package["name"])
        via = parents.get(name, set()) - {name}
        if name in groups:
            facts, used_by = curated[name], [groups[name]]
        else:
            risk = max((curated[p]["risk"] for p in via), key=RISK_ORDER.__getitem__, default="low")
            facts = curated.get(name) or {
                "purpose": _describe(via)
                if via
                else "unused (not reachable from a direct dependency)",
                "risk": risk,
                "verification": "through the verification of " + ", ".join(sorted(via)[:3]),
            }
            used_by = sorted({groups[p] for p in via})
        items.append(
            {
                "name": name,
                "version": package["version"],
                "licence": licence_of(name),
                "direct": name in groups,
                "groups": used_by,
                "required_by": sorted(via),
                "purpose": facts["purpose"],
                "risk": facts["risk"],
                "verification": facts["verification"],
            }
        )
    return {
        "generated_from": "uv.lock",
        "lock_sha256": hashlib.sha256(lock_bytes).hexdigest(),
        "packages": items,
        "other": curation.get("other", []),
        "unused_curation": sorted(set(curated) - {i["name"] for i in items}),
    }


def dump(soup: dict[str, Any]) -> str:
    return json.dumps(soup, indent=1, sort_keys=True) + "\n"


def staleness(
    committed_path: Path = SOUP_JSON, lock_path: Path = LOCK, curation_path: Path = CURATION
) -> list[str]:
    """Why the committed SOUP list no longer matches the lock (empty when current)."""
    if not committed_path.is_file():
        return [f"{committed_path} is missing: python -m compliance.gen soup --write"]
    committed = json.loads(committed_path.read_text())
    try:
        fresh = generate(lock_path, curation_path)
    except ValueError as exc:
        return [str(exc)]
    problems = []
    if committed.get("lock_sha256") != fresh["lock_sha256"]:
        problems.append(
            "uv.lock changed since the SOUP list was generated "
            f"(list: {str(committed.get('lock_sha256'))[:12]}, lock: "
            f"{fresh['lock_sha256'][:12]})"
        )
    old = {p["name"]: p for p in committed.get("packages", [])}
    new = {p["name"]: p for p in fresh["packages"]}
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            problems.append(f"{name} is in the SOUP list but no longer in uv.lock")
        elif name not in old:
            problems.append(f"{name} {new[name]['version']} is in uv.lock but not in the SOUP list")
        else:
            changed = [k for k in new[name] if new[name][k] != old[name].get(k)]
            if changed:
                problems.append(f"{name}: {', '.join(changed)} changed")
    if problems:
        problems.append("regenerate and review: python -m compliance.gen soup --write")
    return problems
