"""Render every compliance document (Markdown and HTML) into one folder.

Process documents come from ``compliance/docs``; the others are generated from
``compliance/data``, the SOUP list, pytest's collection and a JUnit XML run.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from compliance.gen import documents, reports
from compliance.gen.data import DOCS_DIR, check_data, check_tests, load_data
from compliance.gen.soup import SOUP_JSON, staleness
from compliance.gen.trace import collect_tests, parse_junit, verdicts

_STYLE = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;
line-height:1.45;color:#222}table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top;text-align:left}
th{background:#f2f2f2}code{background:#f6f6f6;padding:0 .2rem}nav{margin-bottom:1rem}"""


@dataclass
class RenderResult:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    failed_tests: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and self.failed_tests == 0


def to_html(markdown: str, title: str) -> str:
    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    body = re.sub(r'href="([\w.-]+)\.md"', r'href="\1.html"', body)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<nav><a href="index.html">MinIVess IEC 62304 documentation</a></nav>\n'
        f"{body}</body></html>\n"
    )


def _write(result: RenderResult, name: str, markdown: str) -> None:
    title = next((line[2:] for line in markdown.splitlines() if line.startswith("# ")), name)
    for suffix, text in ((".md", markdown), (".html", to_html(markdown, title))):
        path = result.out_dir / f"{name}{suffix}"
        path.write_text(text, encoding="utf-8")
        result.files.append(path)


def _write_json(result: RenderResult, name: str, payload: Any) -> None:
    path = result.out_dir / name
    path.write_text(json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n")
    result.files.append(path)


def render(
    out_dir: Path, junit: Path | None = None, test_map: dict[str, list[str]] | None = None
) -> RenderResult:
    """Write everything into ``out_dir``; problems and failed tests are in the result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = RenderResult(out_dir)
    data = load_data()
    soup = json.loads(SOUP_JSON.read_text()) if SOUP_JSON.is_file() else {"packages": []}
    result.problems += staleness()
    result.problems += check_data(data, {p["name"] for p in soup["packages"]})
    if test_map is None:
        test_map = collect_tests()
    result.problems += check_tests(data.requirements, test_map)
    run = parse_junit(junit) if junit else None
    found = verdicts(data.requirements, test_map, run)
    status = {v.requirement.id: v.status for v in found}
    env = reports.environment(junit)
    result.failed_tests = sum(
        n for k, n in (run.totals if run else {}).items() if k in ("failed", "error")
    )

    for doc in sorted(DOCS_DIR.glob("*.md")):
        _write(result, doc.stem, doc.read_text(encoding="utf-8"))
    _write(result, "requirements", documents.requirements_md(data, status))
    _write(result, "architecture", documents.architecture_md(data, soup))
    _write(result, "risk-management", documents.risk_md(data, status))
    _write(
        result,
        "soup",
        documents.soup_md(soup)
        if soup["packages"]
        else "# SOUP list\n\nMissing: python -m compliance.gen soup --write\n",
    )
    _write(result, "iec62304-checklist", documents.checklist_md(data))
    _write(result, "traceability", reports.traceability_md(data, found))
    _write(result, "verification-report", reports.verification_md(found, run, env, test_map))
    _write(result, "index", reports.index_md(env, found, result.problems))

    _write_json(result, "soup.json", soup)
    _write_json(
        result,
        "traceability.json",
        {
            "environment": env,
            "requirements": {
                v.requirement.id: {
                    "status": v.status,
                    "code": v.requirement.code,
                    "tests": {n: (r.outcome if r else "not run") for n, r in v.tests},
                }
                for v in found
            },
            "hazards": {
                h.id: {c.id: c.requirements for c in h.controls} for h in data.risks.hazards
            },
            "problems": result.problems,
        },
    )
    if junit:
        copy = out_dir / "junit.xml"
        if junit.resolve() != copy.resolve():
            shutil.copyfile(junit, copy)
        result.files.append(copy)
    return result
