"""The compliance data (``compliance/data/*.yaml``): schemas, loading, consistency checks.

``check_data`` returns problems (strings) instead of raising, so a test or ``make
compliance`` can list them all at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "compliance" / "data"
DOCS_DIR = REPO_ROOT / "compliance" / "docs"

# The documents ``render`` writes (checklist evidence may point at them).
GENERATED_DOCS = (
    "index.md",
    "requirements.md",
    "architecture.md",
    "risk-management.md",
    "soup.md",
    "traceability.md",
    "verification-report.md",
    "iec62304-checklist.md",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Requirement(_Strict):
    id: str = Field(pattern=r"^SRS-\d{3}$")
    title: str
    category: Literal["function", "interface", "performance", "security", "risk-control", "tooling"]
    status: Literal["implemented", "planned", "retired"]
    source: str
    text: str
    code: list[str] = Field(default_factory=list)


class Control(_Strict):
    id: str = Field(pattern=r"^RC-\d{3}$")
    measure: str
    type: Literal["inherent safety by design", "protective measure", "information for safety"]
    requirements: list[str]


class Hazard(_Strict):
    id: str = Field(pattern=r"^HAZ-\d{3}$")
    hazard: str
    situation: str
    harm: str
    severity: int = Field(ge=1, le=5)
    probability: int = Field(ge=1, le=5)
    controls: list[Control]
    residual_severity: int = Field(ge=1, le=5)
    residual_probability: int = Field(ge=1, le=5)
    residual_note: str = ""

    @property
    def risk(self) -> int:
        return self.severity * self.probability

    @property
    def residual_risk(self) -> int:
        return self.residual_severity * self.residual_probability


class RiskPolicy(_Strict):
    severity: dict[int, str]
    probability: dict[int, str]
    acceptable_max: int
    alarp_max: int

    def level(self, risk: int) -> str:
        if risk <= self.acceptable_max:
            return "acceptable"
        return "ALARP" if risk <= self.alarp_max else "unacceptable"


class RiskFile(_Strict):
    policy: RiskPolicy
    hazards: list[Hazard]


class Component(_Strict):
    id: str = Field(pattern=r"^SWI-\d{2}$")
    name: str
    status: Literal["implemented", "planned"]
    safety_class: Literal["A", "B", "C"]
    paths: list[str]
    responsibility: str
    interfaces: list[str]
    soup: list[str]


class Interface(_Strict):
    id: str = Field(pattern=r"^IF-[A-Z]+$")
    name: str
    description: str


class Architecture(_Strict):
    overview: str
    components: list[Component]
    interfaces: list[Interface]


class Clause(_Strict):
    clause: str
    title: str
    status: Literal["met", "partial", "not applicable"]
    evidence: list[str]
    note: str = ""


class Checklist(_Strict):
    clauses: list[Clause]


@dataclass(frozen=True)
class ComplianceData:
    requirements: list[Requirement]
    risks: RiskFile
    architecture: Architecture
    checklist: Checklist

    @property
    def requirement_ids(self) -> dict[str, Requirement]:
        return {req.id: req for req in self.requirements}


def _yaml(path: Path) -> object:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def load_data(data_dir: Path = DATA_DIR) -> ComplianceData:
    raw_requirements = _yaml(data_dir / "requirements.yaml")
    if not isinstance(raw_requirements, list):
        raise ValueError(f"{data_dir / 'requirements.yaml'}: expected a list of requirements")
    return ComplianceData(
        requirements=[Requirement.model_validate(item) for item in raw_requirements],
        risks=RiskFile.model_validate(_yaml(data_dir / "risks.yaml")),
        architecture=Architecture.model_validate(_yaml(data_dir / "architecture.yaml")),
        checklist=Checklist.model_validate(_yaml(data_dir / "iec62304.yaml")),
    )


def _duplicates(ids: list[str]) -> list[str]:
    return sorted({x for x in ids if ids.count(x) > 1})


def check_data(
    data: ComplianceData, soup_names: set[str], repo_root: Path = REPO_ROOT
) -> list[str]:
    """Cross-reference problems in the data; an empty list means consistent."""
    problems: list[str] = []
    known = data.requirement_ids
    for dup in _duplicates([r.id for r in data.requirements]):
        problems.append(f"requirement {dup} is defined more than once")
    for req in data.requirements:
        if req.status == "implemented":
            problems += [
                f"{req.id}: code path {path} does not exist"
                for path in req.code
                if not (repo_root / path).exists()
            ]
    controls = [c for h in data.risks.hazards for c in h.controls]
    for dup in _duplicates([h.id for h in data.risks.hazards] + [c.id for c in controls]):
        problems.append(f"risk file: {dup} is defined more than once")
    policy = data.risks.policy
    for hazard in data.risks.hazards:
        if not hazard.controls:
            problems.append(f"{hazard.id} ({hazard.hazard}) has no risk control")
        if policy.level(hazard.residual_risk) == "unacceptable":
            problems.append(f"{hazard.id}: residual risk {hazard.residual_risk} is unacceptable")
        for control in hazard.controls:
            if not control.requirements:
                problems.append(f"{hazard.id}/{control.id} is linked to no requirement")
            for rid in control.requirements:
                if rid not in known:
                    problems.append(f"{hazard.id}/{control.id} names unknown requirement {rid}")
                elif known[rid].status == "retired":
                    problems.append(f"{hazard.id}/{control.id} names retired requirement {rid}")
    interfaces = {i.id for i in data.architecture.interfaces}
    for comp in data.architecture.components:
        problems += [
            f"{comp.id}: unknown interface {i}" for i in comp.interfaces if i not in interfaces
        ]
        problems += [
            f"{comp.id}: SOUP {name} is not in the SOUP list"
            for name in comp.soup
            if name not in soup_names
        ]
        if comp.status == "implemented":
            problems += [
                f"{comp.id}: path {path} does not exist"
                for path in comp.paths
                if not (repo_root / path).exists()
            ]
    for clause in data.checklist.clauses:
        for evidence in clause.evidence:
            generated = evidence.removeprefix("var/compliance/")
            if generated != evidence:
                if generated not in GENERATED_DOCS:
                    problems.append(f"clause {clause.clause}: {evidence} is not generated")
            elif not (repo_root / evidence).exists():
                problems.append(f"clause {clause.clause}: evidence {evidence} does not exist")
    return problems


def check_tests(requirements: list[Requirement], test_map: dict[str, list[str]]) -> list[str]:
    """Problems between requirements and the tests that name them (``{node id: [ids]}``)."""
    problems: list[str] = []
    known = {r.id: r for r in requirements}
    tested: set[str] = set()
    for nodeid, ids in sorted(test_map.items()):
        for rid in ids:
            if rid not in known:
                problems.append(f"{nodeid} names unknown requirement {rid}")
            elif known[rid].status == "retired":
                problems.append(f"{nodeid} names retired requirement {rid}")
            else:
                tested.add(rid)
    for req in requirements:
        if req.status == "implemented" and req.id not in tested:
            problems.append(f"{req.id} ({req.title}) is implemented but no test verifies it")
    return problems
