"""Which tests verify which requirement (the ``requirement`` marker), and test results.

Tests are collected by running pytest with ``compliance.pytest_plugin`` (``--collect-only``)
so parametrized cases and markers on classes are seen exactly as pytest sees them.
Results come from a JUnit XML file of a real run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from compliance.gen.data import REPO_ROOT, Requirement


class CollectionError(RuntimeError):
    """pytest could not collect the tests."""


def collect_tests(
    paths: tuple[str, ...] = ("tests",), repo_root: Path = REPO_ROOT
) -> dict[str, list[str]]:
    """``{node id: [requirement ids]}`` of every test pytest collects under ``paths``."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "requirements.json"
        env = dict(os.environ, PYTHONPATH=str(repo_root))
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--collect-only",
                "-q",
                "-p",
                "compliance.pytest_plugin",
                f"--requirements-json={target}",
                "-p",
                "no:cacheprovider",
                *paths,
            ],
            cwd=repo_root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode not in (0, 5) or not target.is_file():
            tail = (result.stdout + result.stderr)[-3000:]
            raise CollectionError(f"pytest --collect-only failed ({result.returncode}):\n{tail}")
        mapping: dict[str, list[str]] = json.loads(target.read_text())
    return mapping


def tests_by_requirement(test_map: dict[str, list[str]]) -> dict[str, list[str]]:
    by_req: dict[str, list[str]] = defaultdict(list)
    for nodeid, ids in sorted(test_map.items()):
        for rid in ids:
            by_req[rid].append(nodeid)
    return dict(by_req)


def test_function(nodeid: str) -> str:
    """The node id without parameters: one row per test function in the matrices."""
    return nodeid.split("[", 1)[0]


def junit_key(nodeid: str) -> tuple[str, str]:
    """(classname, name) that pytest's JUnit XML gives a node id."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class

    outcome: str  # passed | failed | error | skipped
    seconds: float
    message: str = ""


@dataclass(frozen=True)
class JUnitRun:
    results: dict[tuple[str, str], TestResult]
    timestamp: str
    hostname: str
    totals: dict[str, int]


def parse_junit(path: Path) -> JUnitRun:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    results: dict[tuple[str, str], TestResult] = {}
    totals: dict[str, int] = defaultdict(int)
    for case in (c for suite in suites for c in suite.iter("testcase")):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "failed" if tag == "failure" else tag
                message = (
                    (node.get("message") or "").splitlines()[0][:200] if node.get("message") else ""
                )
                break
        results[(case.get("classname", ""), case.get("name", ""))] = TestResult(
            outcome, float(case.get("time") or 0.0), message
        )
        totals[outcome] += 1
    first = suites[0] if suites else root
    return JUnitRun(results, first.get("timestamp", ""), first.get("hostname", ""), dict(totals))


@dataclass(frozen=True)
class RequirementVerdict:
    requirement: Requirement
    tests: list[tuple[str, TestResult | None]]

    @property
    def status(self) -> str:
        outcomes = [r.outcome if r else "not run" for _, r in self.tests]
        if self.requirement.status == "planned" and not any(o == "passed" for o in outcomes):
            return "planned - not verified"
        if not outcomes:
            return "NO TESTS"
        if any(o in ("failed", "error") for o in outcomes):
            return "FAILED"
        if all(o == "passed" for o in outcomes):
            return "verified"
        if any(o == "passed" for o in outcomes):
            return "partly verified"
        return "not run"


def verdicts(
    requirements: list[Requirement], test_map: dict[str, list[str]], run: JUnitRun | None
) -> list[RequirementVerdict]:
    by_req = tests_by_requirement(test_map)
    out = []
    for req in requirements:
        tests = [
            (nodeid, run.results.get(junit_key(nodeid)) if run else None)
            for nodeid in by_req.get(req.id, [])
        ]
        out.append(RequirementVerdict(req, tests))
    return out
