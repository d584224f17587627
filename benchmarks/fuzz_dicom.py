"""Fuzz the DICOM input paths with mutated instances (hypothesis) and report the figures.

    python -m benchmarks.fuzz_dicom [--examples 10000] [--targets ingest,folder,gateway]
                                    [--time-limit 10] [--json FILE] [--derandomize]

Targets (each gets ``--examples`` instances from :mod:`benchmarks.dicom_mutations`):

* ``ingest``: ``InstanceIngest.accept(bytes)`` as the gateway and the HTTP sidecar call it, with
  a real spool and journal;
* ``folder``: the MAP input path, ``scan_dicom_folder`` -> ``select_series`` ->
  ``series_to_volume`` on a three-slice series of which one slice is mutated;
* ``gateway``: C-STORE over a real association to the in-process gateway (pynetdicom SCU
  streaming the mutated data set bytes as they are), then C-ECHO on a new association.

A case fails when it raises anything but the documented errors, runs past the time limit
(a hang), gets a status outside the documented C-STORE statuses, or a refusal without an
Error Comment. Prints cases tried, the outcome histogram, failures (replayable plans) and
the slowest case; exits 1 when any case failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from pynetdicom import AE, _config, evt
from pynetdicom.dsutils import split_dataset

from benchmarks.dicom_mutations import Seed, apply, describe, make_seeds, mutations
from operators.dicom_input import scan_dicom_folder, select_series, series_to_volume
from operators.errors import PipelineError
from service.gateway import UNCOMPRESSED, Gateway, on_conn_open
from service.ingest import InstanceIngest
from service.journal import Journal
from service.observability.metrics import ApplianceMetrics
from service.settings import load_settings
from service.spool import Spool

# The documented C-STORE statuses of service.ingest (PS3.4 B.2.3); anything else is a bug.
SPECIFIC = {0x0000, 0x0122, 0xA700, 0xA701, 0xA702, 0xA900, 0xC210}
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
VOLUME_BUDGET = 256 * 2**20
TARGETS = ("ingest", "folder", "gateway")


class HangError(Exception):
    """The case ran past the time limit."""


def call_with_limit(action: Callable[[], str], limit: float) -> str:
    """Run ``action`` in a daemon thread; raise HangError when it outlives ``limit`` seconds.

    A hung thread cannot be killed: it is left behind (daemon) and reported, which is
    what a fuzzer needs to see, without stopping the run or the interpreter's exit.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = action()
        except BaseException as error:
            box["error"] = error

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        raise HangError(f"no answer within {limit} s")
    if "error" in box:
        raise box["error"]
    return str(box["value"])


def _where(error: BaseException) -> str:
    """The project frame closest to where ``error`` was raised (file:line)."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "site-packages" not in f.filename] or frames
    return f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"


@dataclass
class Stats:
    target: str
    cases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    max_gap_s: float = 0.0  # harness time between two cases (generation, bookkeeping)
    _last_end: float | None = None

    def summary(self) -> dict[str, Any]:
        times = sorted(self.seconds) or [0.0]
        return {
            "target": self.target,
            "cases": self.cases,
            "failures": len(self.failures),
            "max_s": round(times[-1], 4),
            "p99_s": round(times[int(0.99 * (len(times) - 1))], 4),
            "mean_s": round(statistics.fmean(times), 5),
            "max_gap_between_cases_s": round(self.max_gap_s, 3),
            "outcomes": dict(self.outcomes.most_common()),
            "failure_kinds": dict(Counter(f.split(" <- ")[0][:110] for f in self.failures)),
            "first_failures": self.failures[:10],
        }


class Harness:
    """Seeds, a spool/journal/gateway in ``workdir``, and one run per target."""

    def __init__(self, workdir: Path, time_limit: float = 10.0) -> None:
        self.workdir = workdir
        self.time_limit = time_limit
        self.seeds: list[Seed] = make_seeds(workdir / "seeds")
        self.settings = load_settings(
            environ={}, var_dir=workdir / "var", dicom_port=0, min_free_disk_bytes=0,
            max_pending_jobs=10**9, max_instance_bytes=64 * 2**20,
        )  # fmt: skip
        self.journal = Journal(self.settings.journal_path)
        self.metrics = ApplianceMetrics()
        self.ingest = InstanceIngest(self.settings, Spool(self.settings.spool_dir), self.journal,
                                     self.metrics)  # fmt: skip
        self.gateway: Gateway | None = None
        self._assoc: Any = None
        self._counter = 0

    # ------------------------------------------------------------------ targets

    def check_ingest(self, plan: dict[str, Any]) -> str:
        _, data = apply(self.seeds, plan, dataset_only=False)
        result = self.ingest.accept(data, interface="fuzz")
        return self._status(result.status, result.reason, result.comment)

    def check_folder(self, plan: dict[str, Any]) -> str:
        seed, data = apply(self.seeds, plan, dataset_only=False)
        self._counter += 1
        folder = self.workdir / "folders" / str(self._counter)
        folder.mkdir(parents=True)
        syntax = seed.name.split(":")[1]
        for index, other in enumerate(s for s in self.seeds if s.name.endswith(":" + syntax)):
            _, raw = apply([other], {"seed": 0, "elements": [], "bytes": [],
                                     "whole_file": False}, dataset_only=False)  # fmt: skip
            (folder / f"{index}.dcm").write_bytes(data if other is seed else raw)
        try:
            scan = scan_dicom_folder(folder)
            skipped = "skipped " if scan.skipped else ""
            volumes = [series_to_volume(s, VOLUME_BUDGET) for s in select_series(scan)]
            return f"{skipped}volume x{len(volumes)}"
        except PipelineError as error:
            return error.reason
        finally:
            for path in folder.iterdir():
                path.unlink()
            folder.rmdir()

    def check_gateway(self, plan: dict[str, Any]) -> str:
        _, data = apply(self.seeds, plan, dataset_only=True)
        path = self.workdir / "send.dcm"
        path.write_bytes(data)
        try:  # what the SCU does first: a data set cut inside its first header stops it
            split_dataset(path)
        except Exception:
            return "not sendable by the SCU"
        assoc = self._association()
        status = assoc.send_c_store(path)  # chunked: the bytes travel as they are
        if "Status" not in status:
            self._assoc = None
            raise RuntimeError("no C-STORE response (association aborted or timed out)")
        return self._status(int(status.Status), "", str(status.get("ErrorComment", "")))

    @staticmethod
    def _status(status: int, reason: str, comment: str) -> str:
        if status not in SPECIFIC:
            raise AssertionError(f"unexpected status 0x{status:04X}")
        if status != 0 and not comment:
            raise AssertionError(f"status 0x{status:04X} without an Error Comment")
        return f"0x{status:04X} {reason}".strip()

    # ------------------------------------------------------------------ gateway

    def _association(self) -> Any:
        if self.gateway is None:
            self.gateway = Gateway(self.settings, self.ingest)
            self.gateway.start()
        if self._assoc is None or not self._assoc.is_established:
            ae = AE(ae_title="FUZZER")
            ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.time_limit
            for syntax in {s.syntax for s in self.seeds}:
                ae.add_requested_context(CT_IMAGE, syntax)
            handlers: list[Any] = [(evt.EVT_CONN_OPEN, on_conn_open)]
            self._assoc = ae.associate(
                "127.0.0.1", self.gateway.port, ae_title="MINIVESS", evt_handlers=handlers
            )
        return self._assoc

    def echo(self) -> bool:
        """A fresh association answers C-ECHO (the gateway survived the run)."""
        assert self.gateway is not None
        ae = AE(ae_title="FUZZECHO")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.time_limit
        ae.add_requested_context("1.2.840.10008.1.1", list(UNCOMPRESSED))
        assoc = ae.associate("127.0.0.1", self.gateway.port, ae_title="MINIVESS")
        try:
            return bool(assoc.is_established and assoc.send_c_echo().Status == 0)
        finally:
            if assoc.is_established:
                assoc.release()

    # ------------------------------------------------------------------ running

    def run(self, target: str, examples: int, derandomize: bool = False) -> Stats:
        check = {"ingest": self.check_ingest, "folder": self.check_folder,
                 "gateway": self.check_gateway}[target]  # fmt: skip
        stats = Stats(target)

        @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(plan=mutations(len(self.seeds)))
        def case(plan: dict[str, Any]) -> None:
            stats.cases += 1
            started = time.perf_counter()
            if stats._last_end is not None:
                stats.max_gap_s = max(stats.max_gap_s, started - stats._last_end)
            try:
                outcome = call_with_limit(lambda: check(plan), self.time_limit)
            except Exception as error:  # every other kind is a finding
                outcome = f"FAILED {type(error).__name__}"
                stats.failures.append(f"{type(error).__name__} at {_where(error)}: {error}"[:200]
                                      + f" <- {describe(plan, self.seeds)}"[:400])  # fmt: skip
            stats._last_end = time.perf_counter()
            stats.seconds.append(stats._last_end - started)
            stats.outcomes[outcome] += 1

        previous = _config.STORE_SEND_CHUNKED_DATASET
        _config.STORE_SEND_CHUNKED_DATASET = True
        try:
            case()
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = previous
        if target == "gateway":
            if self._assoc is not None and self._assoc.is_established:
                self._assoc.release()
            if not self.echo():
                stats.failures.append("the gateway does not answer C-ECHO after the run")
        return stats

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        self.journal.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="mutated instances a target")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per instance")
    parser.add_argument("--derandomize", action="store_true", help="same cases every run")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    # Refusals and pydicom's complaints are warnings, several per case: keep the console
    # for the figures.
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    results = []
    with tempfile.TemporaryDirectory(prefix="fuzz-dicom-") as work:
        harness = Harness(Path(work), args.time_limit)
        try:
            for target in args.targets.split(","):
                started = time.perf_counter()
                stats = harness.run(target, args.examples, args.derandomize)
                summary = {**stats.summary(), "wall_s": round(time.perf_counter() - started, 1)}
                results.append(summary)
                print(json.dumps(summary, indent=2))
        finally:
            harness.close()
    total = sum(r["cases"] for r in results)
    failed = sum(r["failures"] for r in results)
    slowest = max((r["max_s"] for r in results), default=0.0)
    print(f"TOTAL cases {total}, failures {failed}, max time per instance {slowest:.3f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
