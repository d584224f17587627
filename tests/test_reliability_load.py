"""Load in CI: 16 concurrent associations, one study each, against the real service.

The CI share of ``python -m benchmarks.soak load`` (50 studies): the service runs as
``python -m service serve``, results go to a real Orthanc. With at most 4 unfinished
studies allowed, most senders are refused with 0xA702 at first and retry: back-pressure,
not a growing queue. Nothing may be lost and every study gets its results exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import load_run
from tests.peers import run_orthanc

pytestmark = [pytest.mark.peer, pytest.mark.slow]

# Resident memory of the service with its models warm is ~0.9 GiB on this kind of machine;
# a queue that grew with the load would show well above it.
RSS_BOUND_MIB = 1536


@pytest.mark.requirement("SRS-074")
def test_sixteen_concurrent_associations_with_back_pressure(tmp_path: Path) -> None:
    with run_orthanc(tmp_path / "pacs", aet="PACS") as pacs:
        figures = load_run(tmp_path / "load", pacs, studies=16, associations=16, max_pending=4,
                           quiet=1.0, say=lambda _: None)  # fmt: skip
    assert figures["problems"] == []
    assert figures["studies_lost"] == 0 and figures["studies_done_once"] == 16
    assert figures["senders"].get("0xA702 back-pressure", 0) > 0, figures["senders"]
    assert figures["max_unfinished_jobs_seen"] <= 4
    assert figures["peak_rss_mib"] < RSS_BOUND_MIB, figures
