"""``make compliance``: documents rendered from data and a real pytest JUnit run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compliance.gen.data import GENERATED_DOCS, Requirement
from compliance.gen.render import render
from compliance.gen.trace import junit_key, parse_junit, verdicts

REPO = Path(__file__).resolve().parents[1]

SAMPLE_TESTS = """
import pytest

@pytest.mark.requirement("SRS-001")
@pytest.mark.parametrize("n", [1, 2])
def test_passes(n):
    assert n

@pytest.mark.requirement("SRS-002")
class TestGroup:
    def test_fails(self):
        assert False, "boom"

    @pytest.mark.requirement("SRS-001")
    def test_skips(self):
        pytest.skip("not here")
"""


def _run_sample(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    """Run a tiny suite under pytest with the plugin: its JUnit XML and requirement map."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_sample.py").write_text(SAMPLE_TESTS)
    junit, mapping = tmp_path / "junit.xml", tmp_path / "map.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "compliance.pytest_plugin",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            f"--requirements-json={mapping}",
            "--rootdir",
            str(tmp_path),
            "tests/test_sample.py",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=False,
    )
    return junit, json.loads(mapping.read_text())


def _req(rid: str, status: str = "implemented") -> Requirement:
    return Requirement(id=rid, title=rid, category="function", status=status, source="s", text="x")  # type: ignore[arg-type]


@pytest.mark.requirement("SRS-036")
def test_junit_results_are_matched_to_requirements(tmp_path: Path) -> None:
    junit, test_map = _run_sample(tmp_path)
    assert test_map["tests/test_sample.py::TestGroup::test_skips"] == ["SRS-001", "SRS-002"]
    run = parse_junit(junit)
    assert run.totals == {"passed": 2, "failed": 1, "skipped": 1}
    assert all(junit_key(nodeid) in run.results for nodeid in test_map)
    found = {
        v.requirement.id: v
        for v in verdicts(
            [_req("SRS-001"), _req("SRS-002"), _req("SRS-003", "planned")], test_map, run
        )
    }
    assert found["SRS-001"].status == "partly verified"  # two passed, one skipped
    assert found["SRS-002"].status == "FAILED"
    assert found["SRS-003"].status == "planned - not verified"
    assert verdicts([_req("SRS-004")], test_map, run)[0].status == "NO TESTS"


@pytest.mark.requirement("SRS-036")
def test_render_writes_every_document_with_the_run(tmp_path: Path) -> None:
    junit, _ = _run_sample(tmp_path)
    # The repository's own requirement map, with every test passing in a synthetic run.
    test_map = {"tests/test_models.py::test_untouched_ensemble_loads": ["SRS-016"]}
    out = tmp_path / "out"
    result = render(out, junit, test_map)
    for name in GENERATED_DOCS:
        assert (out / name).is_file() and (out / name.replace(".md", ".html")).is_file()
    for name in (
        "development-plan",
        "maintenance-plan",
        "configuration-management",
        "problem-resolution",
        "audit-log",
    ):
        assert (out / f"{name}.html").is_file()
    assert (out / "junit.xml").is_file() and (out / "soup.json").is_file()
    # Only SRS-016 is tested in this map, so the checks list the others, and a test failed.
    assert not result.ok and result.failed_tests == 1
    assert any("SRS-001" in p and "no test verifies it" in p for p in result.problems)

    report = (out / "verification-report.md").read_text()
    assert "| SRS-016 Model integrity | not run | 0 / 1 |" in report
    assert "planned - not verified" in report
    assert "tests/test_sample.py::TestGroup::test_fails" not in report  # not in this test map
    trace = json.loads((out / "traceability.json").read_text())
    assert trace["requirements"]["SRS-016"]["code"] == ["models/loader.py", "models/manifest.py"]
    assert trace["hazards"]["HAZ-005"]["RC-009"] == ["SRS-016", "SRS-017"]
    html = (out / "index.html").read_text()
    assert '<a href="requirements.html">' in html and "<table>" in (out / "soup.html").read_text()
    risk = (out / "risk-management.md").read_text()
    assert "HAZ-004 Flipped or shifted segmentation" in risk
    assert "SRS-009 (NO TESTS)" in risk and "SRS-016 (not run)" in risk
