"""Benchmark: gateway ingest vs dcmtk storescp, and study latency under a steady stream.

    python -m benchmarks.ingest_benchmark [--sizes 256,512] [--instances 200] [--repeats 3]
                                          [--studies 12] [--interval 5] [--skip-latency]

1. Ingest throughput (instances/s), for each ``--sizes`` in-plane matrix (256: 128 KiB
   CT slices, 512: 512 KiB, a typical CT slice), ``--instances`` slices per series (at
   most 50 distinct slices are generated, then reused with fresh UIDs). Side by side in
   one run, ``--repeats`` times, the receivers rotating their order every repeat, dcmtk
   ``storescu`` sends the same copy of the series (fresh Study/Series/SOP Instance UIDs
   per round) to each of:

   * dcmtk ``storescp`` (writes files, no fsync);
   * our gateway (writes and fsyncs every instance and its directory, and journals it in
     SQLite, before the success status); the pipeline is loaded but the quiet period is
     an hour, so no study is processed while ingest is measured;
   * a plain pynetdicom Storage SCP whose C-STORE handler returns Success at once, on
     pynetdicom's stock reactors and 16 KiB max PDU (``AE.start_server``);
   * the same on our event-driven reactors (:mod:`service.dicom_reactor`), 1 MiB max PDU.

   The pynetdicom rows are the library's own ceiling here: the gap between them and the
   gateway is our checks + fsync + journal, the gap between them and storescp is
   pynetdicom. Both pynetdicom receivers set TCP_NODELAY per association, as the gateway
   does. One association, and four concurrent associations (a quarter each); ``sync``
   before every send. Besides instances/s (median), the table gives the ratio to
   storescp (same size and associations) and, for receivers in this process, CPU
   milliseconds per instance (median of ``time.process_time()`` over the send: this
   process's threads only, not the storescu children nor storescp).
2. Study latency (last instance received -> export done) for ``--studies`` small studies
   sent one every ``--interval`` seconds to the full service (quiet period 1 s), results
   exported to a storescp sink: p50 and p95. ``--skip-latency`` skips it.
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
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from map_app.pipeline import Pipeline
from service.app import Service
from service.gateway import on_conn_open, start_scp_server
from service.journal import TERMINAL
from service.settings import ServiceSettings, load_settings
from synthetic.case import Modality, generate_case
from synthetic.dicom_series import StudyIdentity, write_series

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TCP_NODELAY": "1"}
DISTINCT_SLICES = 50  # generated per size; more instances reuse them with fresh UIDs
STORESCP = "storescp"
GATEWAY = "gateway (fsync)"
STOCK = "pynetdicom, do-nothing handler (stock reactors, 16 KiB PDU)"
OURS = "pynetdicom, do-nothing handler (our reactors, 1 MiB PDU)"
RECEIVERS = (STORESCP, GATEWAY, STOCK, OURS)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_series(size: int, instances: int, folder: Path) -> list[Path]:
    """Up to DISTINCT_SLICES CT slices of ``size`` x ``size`` (0.5 mm pixels, 1 mm apart)."""
    slices = min(instances, DISTINCT_SLICES)
    case = generate_case(77, Modality.CT, spacing=(1.0, 0.5, 0.5),
                         fov_mm=(float(slices), size * 0.5, size * 0.5))  # fmt: skip
    if case.image.shape != (slices, size, size):
        raise RuntimeError(f"generated {case.image.shape}, wanted {(slices, size, size)}")
    return list(write_series(case, folder).files)


def fresh_copy(source: list[Path], target: Path, count: int) -> list[Path]:
    """``count`` instances cycling through ``source``, with new Study/Series/SOP Instance
    UIDs and instance numbers (no duplicate short-cuts)."""
    target.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    out = []
    for index in range(count):
        ds = pydicom.dcmread(source[index % len(source)])
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = index + 1
        ds.save_as(target / f"{index:05d}.dcm", enforce_file_format=True)
        out.append(target / f"{index:05d}.dcm")
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


@contextmanager
def do_nothing_scp(syntax: str, ours: bool) -> Iterator[int]:
    """A pynetdicom CT Storage SCP answering Success at once; its port."""
    ae = AE(ae_title="NOOP")
    ae.add_supported_context(CTImageStorage, [syntax])
    handlers: list[Any] = [(evt.EVT_CONN_OPEN, on_conn_open),
                           (evt.EVT_C_STORE, lambda event: 0x0000)]  # fmt: skip
    if ours:  # as Gateway.start does
        ae.maximum_pdu_size = ServiceSettings().dicom_max_pdu_bytes
        server = start_scp_server(ae, ("127.0.0.1", 0), handlers)
    else:
        started = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        assert started is not None
        server = started
    try:
        yield int(server.server_address[1])
    finally:
        ae.shutdown()


def settings(var: Path, **values: Any) -> ServiceSettings:
    return load_settings(environ={}, var_dir=var, dicom_port=0, min_free_disk_bytes=0,
                         model_dir=ROOT / "models" / "ensemble", **values)  # fmt: skip


@contextmanager
def receiver(name: str, pipeline: Pipeline, folder: Path, syntax: str) -> Iterator[tuple[int, str]]:
    """Start receiver ``name``; its port and AE title."""
    if name == STORESCP:
        with storescp(folder) as port:
            yield port, "SINK"
    elif name == GATEWAY:
        config = settings(folder, quiet_period_s=3600, max_associations=8)
        with Service(config, pipeline=pipeline) as service:
            yield service.gateway.port, "MINIVESS"
    else:
        with do_nothing_scp(syntax, ours=name == OURS) as port:
            yield port, "NOOP"


def ingest(pipeline: Pipeline, series: list[Path], instances: int, work: Path,
           repeats: int) -> None:  # fmt: skip
    rates: dict[tuple[str, int], list[float]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}
    first = pydicom.dcmread(series[0], stop_before_pixels=True)
    syntax = str(first.file_meta.TransferSyntaxUID)
    for repeat in range(repeats):
        order = RECEIVERS[repeat % len(RECEIVERS) :] + RECEIVERS[: repeat % len(RECEIVERS)]
        for associations in (1, 4):
            round_dir = work / f"round-{repeat}-{associations}"
            files = fresh_copy(series, round_dir / "series", instances)
            for index, name in enumerate(order):
                with receiver(name, pipeline, round_dir / f"rx-{index}", syntax) as (port, aet):
                    os.sync()  # no writeback left over from the previous receiver
                    cpu_started = time.process_time()
                    seconds = send(port, aet, files, associations)
                    cpu_seconds = time.process_time() - cpu_started
                rates.setdefault((name, associations), []).append(len(files) / seconds)
                cpu.setdefault((name, associations), []).append(1000 * cpu_seconds / len(files))
            shutil.rmtree(round_dir)
    print(f"\n## ingest, {instances} instances of {first.Rows}x{first.Columns} "
          f"({series[0].stat().st_size // 1024} KiB), median of {repeats}")  # fmt: skip
    print("| receiver | associations | instances/s (median) | ratio to storescp "
          "| CPU ms/instance (this process only) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for associations in (1, 4):
        theirs = statistics.median(rates[(STORESCP, associations)])
        for name in RECEIVERS:
            rate = statistics.median(rates[(name, associations)])
            cost = "" if name == STORESCP else f"{statistics.median(cpu[(name, associations)]):.2f}"
            print(f"| {name} | {associations} | {rate:.0f} | {rate / theirs:.2f} | {cost} |")


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
    parser.add_argument("--sizes", default="256,512", help="in-plane matrices, e.g. 256,512")
    parser.add_argument("--instances", type=int, default=200, help="slices per series")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--skip-latency", action="store_true", help="only the ingest part")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    if shutil.which("storescp") is None:
        print("dcmtk storescp/storescu not found: install dcmtk", file=sys.stderr)
        return 2
    pipeline = Pipeline(ROOT / "models" / "ensemble")
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        work = Path(tmp)
        for size in sizes:
            series = make_series(size, args.instances, work / f"series-{size}")
            ingest(pipeline, series, args.instances, work / f"ingest-{size}", args.repeats)
        if not args.skip_latency:
            latency(pipeline, work, args.studies, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
