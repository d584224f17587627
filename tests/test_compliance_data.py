"""The compliance data stay consistent with the code, the tests and the lock."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compliance.gen import soup
from compliance.gen.data import ComplianceData, Requirement, check_data, check_tests, load_data
from compliance.gen.trace import collect_tests


@pytest.fixture(scope="module")
def data() -> ComplianceData:
    return load_data()


@pytest.fixture(scope="module")
def soup_names() -> set[str]:
    return {p["name"] for p in json.loads(soup.SOUP_JSON.read_text())["packages"]}


def _req(rid: str, status: str = "implemented") -> Requirement:
    return Requirement(id=rid, title="t", category="function", status=status, source="s", text="x")  # type: ignore[arg-type]


@pytest.mark.requirement("SRS-036")
def test_committed_data_is_consistent(data: ComplianceData, soup_names: set[str]) -> None:
    assert check_data(data, soup_names) == []
    ids = [r.id for r in data.requirements]
    assert ids == sorted(ids) and len(ids) > 40
    assert {h.id for h in data.risks.hazards} >= {f"HAZ-{i:03d}" for i in range(1, 10)}


@pytest.mark.requirement("SRS-036")
def test_every_implemented_requirement_has_a_test_and_every_marker_is_known(
    data: ComplianceData,
) -> None:
    test_map = collect_tests()
    assert check_tests(data.requirements, test_map) == []
    assert sum(1 for ids in test_map.values() if ids) > 100


@pytest.mark.requirement("SRS-036")
def test_soup_list_matches_the_lock() -> None:
    assert soup.staleness() == []


@pytest.mark.requirement("SRS-036")
def test_requirement_checks_fail_on_missing_or_unknown() -> None:
    requirements = [_req("SRS-001"), _req("SRS-002"), _req("SRS-003", "planned")]
    good = {"tests/a.py::test_one": ["SRS-001"], "tests/a.py::test_two[x]": ["SRS-002"]}
    assert check_tests(requirements, good) == []  # the planned SRS-003 may lack tests
    problems = check_tests(requirements, {"tests/a.py::test_one": ["SRS-001", "SRS-999"]})
    assert problems == [
        "tests/a.py::test_one names unknown requirement SRS-999",
        "SRS-002 (t) is implemented but no test verifies it",
    ]
    retired = [*requirements, _req("SRS-004", "retired")]
    assert check_tests(retired, {**good, "t::x": ["SRS-004"]}) == [
        "t::x names retired requirement SRS-004"
    ]


@pytest.mark.requirement("SRS-036")
def test_risk_checks_fail_on_missing_control_or_unknown_requirement(
    data: ComplianceData, soup_names: set[str]
) -> None:
    hazards = list(data.risks.hazards)
    first, second = hazards[0], hazards[1]
    bad_control = second.controls[0].model_copy(update={"requirements": ["SRS-998"]})
    hazards[0] = first.model_copy(update={"controls": []})
    hazards[1] = second.model_copy(update={"controls": [bad_control, *second.controls[1:]]})
    broken = ComplianceData(
        requirements=data.requirements,
        risks=data.risks.model_copy(update={"hazards": hazards}),
        architecture=data.architecture,
        checklist=data.checklist,
    )
    problems = check_data(broken, soup_names)
    assert f"{first.id} ({first.hazard}) has no risk control" in problems
    assert f"{second.id}/{bad_control.id} names unknown requirement SRS-998" in problems
    unacceptable = first.model_copy(update={"residual_severity": 5, "residual_probability": 4})
    problems = check_data(
        ComplianceData(
            data.requirements,
            data.risks.model_copy(update={"hazards": [unacceptable]}),
            data.architecture,
            data.checklist,
        ),
        soup_names,
    )
    assert f"{first.id}: residual risk 20 is unacceptable" in problems


@pytest.mark.requirement("SRS-036")
def test_architecture_and_code_checks(data: ComplianceData, soup_names: set[str]) -> None:
    component = data.architecture.components[0].model_copy(
        update={"soup": ["no-such-package"], "paths": ["operators/absent.py"]}
    )
    requirement = data.requirements[0].model_copy(update={"code": ["operators/gone.py"]})
    broken = ComplianceData(
        requirements=[requirement, *data.requirements[1:]],
        risks=data.risks,
        architecture=data.architecture.model_copy(update={"components": [component]}),
        checklist=data.checklist,
    )
    problems = check_data(broken, soup_names)
    assert f"{component.id}: SOUP no-such-package is not in the SOUP list" in problems
    assert f"{component.id}: path operators/absent.py does not exist" in problems
    assert f"{requirement.id}: code path operators/gone.py does not exist" in problems


@pytest.mark.requirement("SRS-036")
def test_soup_list_goes_stale_when_the_lock_changes(tmp_path: Path) -> None:
    lock = tmp_path / "uv.lock"
    shutil.copyfile(soup.LOCK, lock)
    committed = tmp_path / "soup.json"
    committed.write_text(soup.dump(soup.generate(lock)))
    assert soup.staleness(committed, lock) == []

    text = lock.read_text()
    lock.write_text(
        text.replace('name = "pydicom"\nversion = "', 'name = "pydicom"\nversion = "9', 1)
    )
    problems = soup.staleness(committed, lock)
    assert problems[0].startswith("uv.lock changed since the SOUP list was generated")
    assert any(p.startswith("pydicom: version") for p in problems)
    assert problems[-1] == "regenerate and review: python -m compliance.gen soup --write"

    # A new direct dependency needs a curated purpose before the list can be generated.
    curation = tmp_path / "curation.yaml"
    curation.write_text(soup.CURATION.read_text().replace("  numpy:\n", "  numpy-gone:\n", 1))
    problems = soup.staleness(committed, soup.LOCK, curation)
    assert problems and "without a curated purpose" in problems[0] and "numpy" in problems[0]


@pytest.mark.requirement("SRS-036")
def test_generated_soup_entries(tmp_path: Path) -> None:
    generated = soup.generate()
    by_name = {p["name"]: p for p in generated["packages"]}
    assert by_name["highdicom"]["direct"] and by_name["highdicom"]["risk"] == "high"
    assert by_name["highdicom"]["groups"] == ["runtime"]
    assert by_name["pytest"]["groups"] == ["dev"] and by_name["pytest"]["risk"] == "low"
    transitive = next(p for p in generated["packages"] if not p["direct"] and p["required_by"])
    assert transitive["purpose"].startswith("transitive of ")
    assert all(p["licence"] for p in generated["packages"])
    assert by_name["numpy"]["licence"] != "unknown (not installed)"
