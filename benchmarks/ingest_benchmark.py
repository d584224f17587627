"""Benchmark: gateway ingest vs dcmtk storescp, and study latency under a steady stream.

    python -m benchmarks.ingest_benchmark [--instances 200] [--repeats 3] [--studies 12]

1. Ingest throughput (instances/s), side by side in one run, alternating, ``--repeats``
   times: dcmtk ``storescu`` sends the same CT series (fresh SOP Instance UIDs per run)
   to dcmtk ``storescp`` (writes files, no fsync) and to our gateway (writes and fsyncs
   every instance and its directory, and journals it in SQLite, before the success
   status). One association, and four concurrent associations (a quarter each). The
   pipeline is loaded but the quiet period is an hour, so no study is processed while
   ingest is measured.
2. Study latency (last instance received -> export done) for ``--studies`` small studies
   sent one every ``--interval`` seconds to the full service (quiet period 1 s), results
   exported to a storescp sink: p50 and p95.
Everything runs on 127.0.0.1; every process started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from map_app.pipeline import Pipeline
from service.app import Service
from service.journal import TERMINAL
from service.settings import ServiceSettings, load_settings
from synthetic.case import Modality, generate_case
from synthetic.dicom_series import StudyIdentity, write_series

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fresh_copy(source: list[Path], target: Path) -> list[Path]:
    """The series with new Study/Series/SOP Instance UIDs (no duplicate short-cuts)."""
    target.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    out = []
    for path in source:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(target / path.name, enforce_file_format=True)
        out.append(target / path.name)
    return out


def send(port: int, aet: str, files: list[Path], associations: int) -> float:
    """Seconds for ``associations`` concurrent storescu processes to send ``files``."""
    chunks = [files[index::associations] for index in range(associations)]
    started = time.perf_counter()
    senders = [
        subprocess.Popen(["storescu", "-aec", aet, "127.0.0.1", str(port), *map(str, chunk)],
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for chunk in chunks
    ]  # fmt: skip
    for sender in senders:
        _, err = sender.communicate(timeout=600)
        if sender.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode()[-500:]}")
    return time.perf_counter() - started


@contextmanager
def storescp(folder: Path, aet: str = "SINK") -> Iterator[int]:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        ["storescp", "-aet", aet, "-od", str(folder), "--fork", str(port)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)


def settings(var: Path, **values: Any) -> ServiceSettings:
    return load_settings(environ={}, var_dir=var, dicom_port=0, min_free_disk_bytes=0,
                         model_dir=ROOT / "models" / "ensemble", **values)  # fmt: skip


def ingest(pipeline: Pipeline, series: list[Path], work: Path, repeats: int) -> None:
    rows: dict[str, list[float]] = {}
    for repeat in range(repeats):
        for associations in (1, 4):
            files = fresh_copy(series, work / f"scp-{repeat}-{associations}")
            with storescp(work / f"scp-out-{repeat}-{associations}") as port:
                seconds = send(port, "SINK", files, associations)
            rows.setdefault(f"storescp x{associations}", []).append(len(files) / seconds)
            files = fresh_copy(series, work / f"ours-{repeat}-{associations}")
            config = settings(work / f"var-{repeat}-{associations}", quiet_period_s=3600,
                              max_associations=8)  # fmt: skip
            with Service(config, pipeline=pipeline) as service:
                seconds = send(service.gateway.port, "MINIVESS", files, associations)
            rows.setdefault(f"gateway x{associations}", []).append(len(files) / seconds)
    print(f"\n## ingest, {len(series)} instances of {series[0].stat().st_size // 1024} KiB "
          f"(median of {repeats})")  # fmt: skip
    print("| receiver | instances/s | gateway / storescp |")
    print("|---|---|---|")
    for associations in (1, 4):
        theirs = statistics.median(rows[f"storescp x{associations}"])
        ours = statistics.median(rows[f"gateway x{associations}"])
        print(f"| storescp, {associations} association(s) | {theirs:.0f} | |")
        print(f"| gateway (fsync), {associations} association(s) | {ours:.0f} | "
              f"{ours / theirs:.2f} |")  # fmt: skip


def latency(pipeline: Pipeline, work: Path, studies: int, interval: float) -> None:
    with storescp(work / "sink") as sink_port:
        config = settings(work / "var-latency", quiet_period_s=1.0, export_destinations=[
            {"host": "127.0.0.1", "port": sink_port, "ae_title": "SINK"}])  # fmt: skip
        with Service(config, pipeline=pipeline) as service:
            uids = []
            for index in range(studies):
                case = generate_case(500 + index, Modality.CT, fov_mm=(16.0, 32.0, 32.0))
                identity = StudyIdentity.synthetic(500 + index, Modality.CT, "latency")
                written = write_series(case, work / f"latency-{index}", identity=identity)
                send(service.gateway.port, "MINIVESS", list(written.files), 1)
                uids.append(written.study_instance_uid)
                time.sleep(interval)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                jobs = [j for j in service.journal.list_jobs() if j.study_uid in uids]
                if len(jobs) == studies and all(j.state in TERMINAL for j in jobs):
                    break
                time.sleep(0.5)
            seconds = [j.finished_at - j.last_received_at for j in jobs
                       if j.state == "done" and j.finished_at]  # fmt: skip
    p50, p95 = np.percentile(seconds, [50, 95])
    print(f"\n## study latency, {studies} studies one every {interval:.0f} s (quiet period 1 s)")
    print(f"done {len(seconds)}/{studies}; last instance -> export done: "
          f"p50 {p50:.2f} s, p95 {p95:.2f} s")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args(argv)
    if shutil.which("storescp") is None:
        print("dcmtk storescp/storescu not found: install dcmtk", file=sys.stderr)
        return 2
    pipeline = Pipeline(ROOT / "models" / "ensemble")
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        work = Path(tmp)
        case = generate_case(77, Modality.CT, spacing=(1.0, 0.5, 0.5),
                             fov_mm=(args.instances - 0.5, 127.75, 127.75))  # fmt: skip
        series = list(write_series(case, work / "series").files)
        ingest(pipeline, series, work, args.repeats)
        latency(pipeline, work, args.studies, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
