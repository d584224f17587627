"""Markdown of the documents rendered from data: requirements, architecture, risk file,
SOUP list and the IEC 62304 checklist."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from compliance.gen.data import ComplianceData


def cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ").strip()


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def hazards_by_requirement(data: ComplianceData) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for hazard in data.risks.hazards:
        for control in hazard.controls:
            for rid in control.requirements:
                found.setdefault(rid, [])
                if hazard.id not in found[rid]:
                    found[rid].append(hazard.id)
    return found


def requirements_md(data: ComplianceData, status: dict[str, str]) -> str:
    controls = hazards_by_requirement(data)
    out = [
        "# Software requirements specification (IEC 62304 5.2)\n",
        "Source: `compliance/data/requirements.yaml`. IDs are stable. *Planned* requirements "
        "belong to parts not built yet and are not verified. *Risk control for* lists the "
        "hazards whose controls rely on the requirement.\n",
        table(
            ["ID", "title", "category", "status", "verification", "risk control for"],
            [
                (
                    r.id,
                    r.title,
                    r.category,
                    r.status,
                    status.get(r.id, "-"),
                    ", ".join(controls.get(r.id, [])) or "-",
                )
                for r in data.requirements
            ],
        ),
    ]
    for req in data.requirements:
        out.append(
            f"\n## {req.id} {req.title}\n\n{req.text}\n\n"
            f"- category: {req.category}; status: {req.status}; source: {req.source}\n"
            f"- code: {', '.join(f'`{c}`' for c in req.code) or '-'}\n"
        )
    return "".join(out)


def architecture_md(data: ComplianceData, soup: dict[str, Any]) -> str:
    versions = {p["name"]: p for p in soup["packages"]}
    arch = data.architecture
    out = [
        "# Software architecture (IEC 62304 5.3)\n\n",
        arch.overview,
        "\n\n## Components\n\n",
        table(
            ["ID", "component", "class", "status", "code", "interfaces", "responsibility"],
            [
                (
                    c.id,
                    c.name,
                    c.safety_class,
                    c.status,
                    ", ".join(c.paths),
                    ", ".join(c.interfaces),
                    c.responsibility,
                )
                for c in arch.components
            ],
        ),
        "\n## Interfaces\n\n",
        table(
            ["ID", "interface", "description"],
            [(i.id, i.name, i.description) for i in arch.interfaces],
        ),
        "\n## SOUP per component (5.3.3, 5.3.4)\n",
    ]
    for comp in arch.components:
        out.append(f"\n### {comp.id} {comp.name}\n\n")
        out.append(
            table(
                ["SOUP", "version", "risk", "purpose"],
                [
                    (
                        n,
                        versions.get(n, {}).get("version", "?"),
                        versions.get(n, {}).get("risk", "?"),
                        versions.get(n, {}).get("purpose", "?"),
                    )
                    for n in comp.soup
                ],
            )
        )
    out.append(
        "\nSegregation (5.3.5): the builder and its SOUP (torch, monai, onnx) are a "
        "separate image and not installed in the appliance; release and test tools "
        "are not shipped.\n"
    )
    return "".join(out)


def risk_md(data: ComplianceData, status: dict[str, str]) -> str:
    policy = data.risks.policy
    out = [
        "# Risk management file (ISO 14971, IEC 62304 7)\n\n",
        "Source: `compliance/data/risks.yaml`. Risk index = severity x probability; "
        f"<= {policy.acceptable_max} acceptable, <= {policy.alarp_max} acceptable only as "
        "low as reasonably practicable with benefit-risk, above that unacceptable.\n\n",
        table(["severity", "meaning"], sorted(policy.severity.items())),
        "\n",
        table(["probability", "meaning"], sorted(policy.probability.items())),
        "\n## Summary\n\n",
        table(
            ["hazard", "description", "S", "P", "risk", "controls", "residual S x P", "residual"],
            [
                (
                    h.id,
                    h.hazard,
                    h.severity,
                    h.probability,
                    f"{h.risk} ({policy.level(h.risk)})",
                    ", ".join(c.id for c in h.controls),
                    f"{h.residual_severity} x {h.residual_probability}",
                    f"{h.residual_risk} ({policy.level(h.residual_risk)})",
                )
                for h in data.risks.hazards
            ],
        ),
    ]
    for h in data.risks.hazards:
        out.append(
            f"\n## {h.id} {h.hazard}\n\n- hazardous situation: {h.situation}\n"
            f"- harm: {h.harm}\n- initial risk: S{h.severity} x P{h.probability} = "
            f"{h.risk} ({policy.level(h.risk)})\n\n"
        )
        out.append(
            table(
                ["control", "measure", "type", "requirements (verification)"],
                [
                    (
                        c.id,
                        c.measure,
                        c.type,
                        ", ".join(f"{r} ({status.get(r, '?')})" for r in c.requirements),
                    )
                    for c in h.controls
                ],
            )
        )
        unverified = sorted(
            {r for c in h.controls for r in c.requirements if status.get(r) != "verified"}
        )
        out.append(
            f"\n- residual risk: S{h.residual_severity} x P{h.residual_probability} = "
            f"{h.residual_risk} ({policy.level(h.residual_risk)}). {h.residual_note}\n"
        )
        if unverified:
            out.append(
                f"- **not yet verified controls:** {', '.join(unverified)}; the residual "
                "estimate assumes them.\n"
            )
    return "".join(out)


def soup_md(soup: dict[str, Any]) -> str:
    packages = soup["packages"]
    direct = [p for p in packages if p["direct"]]
    transitive = [p for p in packages if not p["direct"]]
    columns = ["package", "version", "licence", "group", "risk", "purpose", "verification"]

    def rows(items: list[dict[str, Any]]) -> list[tuple[object, ...]]:
        return [
            (
                p["name"],
                p["version"],
                p["licence"],
                ", ".join(p["groups"]),
                p["risk"],
                p["purpose"],
                p["verification"],
            )
            for p in items
        ]

    return "".join(
        [
            "# SOUP list (IEC 62304 5.3.3, 7.1.2, 8.1.2)\n\n",
            f"Generated from `uv.lock` (SHA-256 `{soup['lock_sha256']}`): {len(packages)} "
            f"packages, {len(direct)} direct. Licences from installed distribution metadata. "
            "Risk: high = a fault can change a clinical output unnoticed; medium = loss, delay "
            "or security; low = no effect on outputs. Groups: runtime = shipped in the "
            "appliance; builder, dev, release = not shipped.\n\n## Direct dependencies\n\n",
            table(columns, rows(direct)),
            "\n## Other SOUP\n\n",
            table(
                ["item", "version", "licence", "risk", "purpose", "verification"],
                [
                    (
                        o["name"],
                        o["version"],
                        o["licence"],
                        o["risk"],
                        o["purpose"],
                        o["verification"],
                    )
                    for o in soup.get("other", [])
                ],
            ),
            "\n## Transitive dependencies\n\n",
            table(columns, rows(transitive)),
        ]
    )


def checklist_md(data: ComplianceData) -> str:
    def link(evidence: str) -> str:
        name = evidence.removeprefix("var/compliance/")
        return f"[{name}]({name})" if name != evidence else f"`{evidence}`"

    return "".join(
        [
            "# IEC 62304 clause checklist (Class B)\n\n",
            table(
                ["clause", "title", "status", "where it is met", "note"],
                [
                    (c.clause, c.title, c.status, ", ".join(link(e) for e in c.evidence), c.note)
                    for c in data.checklist.clauses
                ],
            ),
        ]
    )
