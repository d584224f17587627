"""Markdown of the traceability matrix, the verification report and the index."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from compliance.gen.data import REPO_ROOT, ComplianceData
from compliance.gen.documents import table
from compliance.gen.trace import JUnitRun, RequirementVerdict, test_function

KEY_PACKAGES = (
    "numpy",
    "pydicom",
    "highdicom",
    "pynetdicom",
    "onnxruntime-openvino",
    "monai-deploy-app-sdk",
    "pydantic",
    "cryptography",
    "pytest",
)


def _git(*args: str) -> str:
    try:
        result = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def environment(junit: Path | None) -> dict[str, Any]:
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    lock = REPO_ROOT / "uv.lock"
    return {
        "commit": _git("rev-parse", "HEAD") or "unknown",
        "uncommitted_changes": bool(_git("status", "--porcelain")),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "uv_lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest() if lock.exists() else "",
        "junit_sha256": hashlib.sha256(junit.read_bytes()).hexdigest() if junit else "",
        "packages": versions,
    }


def _functions(nodeids: list[str]) -> list[str]:
    counts = Counter(test_function(n) for n in nodeids)
    return [f"`{f}`" + (f" ({n} cases)" if n > 1 else "") for f, n in counts.items()]


def traceability_md(data: ComplianceData, verdicts: list[RequirementVerdict]) -> str:
    by_id = {v.requirement.id: v for v in verdicts}
    out = [
        "# Traceability matrix\n\nRequirement <-> tests (pytest marker "
        "`@pytest.mark.requirement`) <-> code, then hazard -> risk control -> requirement "
        "-> tests. Generated from `compliance/data` and pytest's collection.\n\n"
        "## Requirements\n\n",
        table(
            ["requirement", "status", "tests", "code"],
            [
                (
                    v.requirement.id + " " + v.requirement.title,
                    v.status,
                    "<br>".join(_functions([n for n, _ in v.tests])) or "-",
                    "<br>".join(f"`{c}`" for c in v.requirement.code),
                )
                for v in verdicts
            ],
        ),
        "\n## Hazards to tests\n\n",
    ]
    rows = []
    for hazard in data.risks.hazards:
        for control in hazard.controls:
            for rid in control.requirements:
                verdict = by_id.get(rid)
                tests = len({test_function(n) for n, _ in verdict.tests}) if verdict else 0
                rows.append(
                    (
                        f"{hazard.id} {hazard.hazard}",
                        f"{control.id} {control.measure}",
                        rid,
                        f"{tests} test functions",
                        verdict.status if verdict else "unknown requirement",
                    )
                )
    out.append(table(["hazard", "control", "requirement", "tests", "verification"], rows))
    return "".join(out)


def verification_md(
    verdicts: list[RequirementVerdict],
    run: JUnitRun | None,
    env: dict[str, Any],
    test_map: dict[str, list[str]],
) -> str:
    statuses = Counter(v.status for v in verdicts)
    unmarked = sorted(n for n, ids in test_map.items() if not ids)
    out = [
        "# Software verification report\n\n",
        table(
            ["", ""],
            [
                (
                    "commit",
                    env["commit"]
                    + (" (with uncommitted changes)" if env["uncommitted_changes"] else ""),
                ),
                ("test run", f"{run.timestamp} on {run.hostname}" if run else "no test run given"),
                (
                    "test results",
                    ", ".join(f"{n} {k}" for k, n in sorted(run.totals.items())) if run else "-",
                ),
                ("JUnit XML SHA-256", env["junit_sha256"] or "-"),
                ("uv.lock SHA-256", env["uv_lock_sha256"]),
                ("Python / platform", f"{env['python']} / {env['platform']}"),
                ("key packages", ", ".join(f"{k} {v}" for k, v in env["packages"].items())),
                ("generated", env["generated_at"]),
            ],
        ),
        "\n## Summary\n\n",
        table(["verification", "requirements"], sorted(statuses.items())),
        "\n*Planned* requirements belong to parts not built yet: they are **not verified** "
        "and their risk controls are not yet in effect.\n\n## Requirements\n\n",
        table(
            ["requirement", "verification", "tests passed / total"],
            [
                (
                    f"{v.requirement.id} {v.requirement.title}",
                    v.status,
                    f"{sum(1 for _, r in v.tests if r and r.outcome == 'passed')} / {len(v.tests)}",
                )
                for v in verdicts
            ],
        ),
    ]
    anomalies = [
        (n, r.outcome, r.message)
        for v in verdicts
        for n, r in v.tests
        if r and r.outcome in ("failed", "error")
    ]
    out.append("\n## Known anomalies (failed tests)\n\n")
    out.append(
        table(["test", "outcome", "message"], sorted(set(anomalies)))
        if anomalies
        else "None in this run.\n"
    )
    out.append("\n## Tests per requirement\n")
    for v in verdicts:
        if not v.tests:
            continue
        grouped: dict[str, Counter[str]] = defaultdict(Counter)
        for nodeid, result in v.tests:
            grouped[test_function(nodeid)][result.outcome if result else "not run"] += 1
        out.append(f"\n### {v.requirement.id} {v.requirement.title}: {v.status}\n\n")
        out.append(
            table(
                ["test", "results"],
                [
                    (f"`{f}`", ", ".join(f"{n} {k}" for k, n in sorted(c.items())))
                    for f, c in grouped.items()
                ],
            )
        )
    out.append(
        f"\n## Tests not linked to a requirement\n\n{len(unmarked)} collected tests carry "
        "no requirement marker (helpers, tooling and tests of parts being written).\n"
    )
    return "".join(out)


def index_md(env: dict[str, Any], verdicts: list[RequirementVerdict], problems: list[str]) -> str:
    docs = [
        ("development-plan", "Software development plan (5.1)"),
        ("requirements", "Software requirements (5.2)"),
        ("architecture", "Architecture and SOUP per component (5.3)"),
        ("soup", "SOUP list (generated from uv.lock)"),
        ("risk-management", "Risk management file (ISO 14971)"),
        ("traceability", "Traceability matrix"),
        ("verification-report", "Verification report"),
        ("iec62304-checklist", "IEC 62304 clause checklist"),
        ("maintenance-plan", "Software maintenance plan (6)"),
        ("configuration-management", "Configuration management (8)"),
        ("problem-resolution", "Problem resolution (9)"),
        ("audit-log", "The audit log"),
    ]
    statuses = Counter(v.status for v in verdicts)
    out = [
        "# MinIVess appliance: IEC 62304 documentation (Class B)\n\n",
        f"Commit `{env['commit']}`, generated {env['generated_at']}. Requirements: "
        + ", ".join(f"{n} {k}" for k, n in sorted(statuses.items()))
        + ".\n\n",
    ]
    out += [f"- [{title}]({name}.md)\n" for name, title in docs]
    out.append("\n## Consistency checks\n\n")
    out += [f"- {p}\n" for p in problems] or ["All checks passed.\n"]
    return "".join(out)
