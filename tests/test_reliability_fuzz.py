"""Fuzzing in CI: a fast, fixed subset of ``benchmarks/fuzz_dicom.py`` (10,000 a target).

Each target gets mutated instances from hypothesis (bit flips, truncation, wrong VRs,
lying lengths, absurd Rows/Columns/Bits, empty or doubled pixel data, deleted and
inserted tags, in four transfer syntaxes): every one must get a documented C-STORE
status (with an Error Comment when refused) or a PipelineError, within the time limit,
and the gateway must still answer C-ECHO afterwards. ``derandomize``: the same cases on
every run, so a red build is reproducible; the benchmark explores new ones.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.fuzz_dicom import Harness
from benchmarks.fuzz_dicom import main as fuzz_main

EXAMPLES = 300
TIME_LIMIT_S = 10.0

pytestmark = [
    pytest.mark.filterwarnings("ignore"),  # pydicom warns about every broken value
]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    running = Harness(tmp_path_factory.mktemp("fuzz"), TIME_LIMIT_S)
    yield running
    running.close()


@pytest.mark.requirement("SRS-072")
@pytest.mark.parametrize("target", ["ingest", "folder", "gateway"])
def test_mutated_instances_get_a_specific_answer(harness: Harness, target: str) -> None:
    stats = harness.run(target, EXAMPLES, derandomize=True)
    summary = stats.summary()
    assert stats.cases >= EXAMPLES * 0.9, summary  # hypothesis may skip a few duplicates
    assert stats.failures == [], "\n".join(stats.failures[:5])
    assert summary["max_s"] < TIME_LIMIT_S
    # The mutations reach past the parser: refusals of several kinds, and some survivors.
    assert len(stats.outcomes) >= 3, summary


@pytest.mark.requirement("SRS-072")
def test_fuzz_benchmark_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The benchmark target runs and prints its figures (tiny run: the CLI, not the cases)."""
    figures = tmp_path / "fuzz.json"
    code = fuzz_main(["--examples", "20", "--targets", "ingest", "--json", str(figures),
                      "--derandomize"])  # fmt: skip
    assert code == 0
    assert ", failures 0, max time per instance" in capsys.readouterr().out
    assert figures.is_file()
