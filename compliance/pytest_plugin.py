"""pytest plugin: the ``requirement`` marker, and where it is used.

    @pytest.mark.requirement("SRS-012", "SRS-013")
    def test_...

Loaded with ``-p compliance.pytest_plugin``. Each marked test carries its requirement IDs
as ``requirement`` properties in the JUnit XML; ``--requirements-json FILE`` writes
``{node id: [requirement IDs]}`` for every collected test (also with ``--collect-only``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

MARKER_HELP = "requirement(*ids): the software requirements (SRS-xxx) this test verifies"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--requirements-json",
        default=None,
        help="write {test node id: [requirement ids]} of the collected tests to this file",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)


def requirement_ids(item: pytest.Item) -> list[str]:
    """Requirement IDs of a test, from every ``requirement`` marker on it (in order)."""
    ids: list[str] = []
    for marker in item.iter_markers("requirement"):
        ids.extend(str(arg) for arg in marker.args if str(arg) not in ids)
    return ids


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    mapping: dict[str, list[str]] = {}
    for item in items:
        ids = requirement_ids(item)
        mapping[item.nodeid] = ids
        item.user_properties.extend(("requirement", rid) for rid in ids)
        if any(m.name == "requirement" and not m.args for m in item.iter_markers()):
            mapping[item.nodeid] = [*ids, "<empty requirement marker>"]
    target = config.getoption("--requirements-json")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(json.dumps(mapping, indent=1, sort_keys=True) + "\n")
