"""Benchmark: studies per hour with 1 and 2 worker processes, and queue-to-start latency.

    python -m benchmarks.scaleout_benchmark [--studies 40] [--workers 1,2] [--senders 4]

For each worker count, on a fresh PostgreSQL schema (Debian's server started here on
127.0.0.1, as tests/test_scaleout_postgres.py does) and a fresh shared folder: one
ingest process (``serve``, ``local_worker=false``) and N ``worker`` processes with the
shipped ensemble; each worker first runs one warm-up study (Holoscan's start-up, ~15 s,
is not throughput), then ``--studies`` small CT studies are pushed by storescu over
``--senders`` concurrent associations and exported to a storescp. Reported per count:
studies/hour from the first push to the last export (wall clock), and the
queue-to-start latency of each job, p50/p95: from the moment it could be queued (its last
instance + the 1 s quiet period) to the worker's "processing study" log line.

What the ratio can show: the worker processes share this machine's cores with the
ingest process, storescu and storescp. On 2 cores with one study at a time per worker,
2 workers can at most use both cores where 1 leaves one mostly idle between its stages;
the ratio measures that overlap, not the scaling of a cluster where each worker has its
own node. Every process started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from service.journal import Journal
from tests.peers import free_port
from tests.pg_support import PostgresServer, postgres_bin
from tests.scaleout_support import Tier, push_concurrently, scaled_config, storescp_receiver
from tests.service_support import make_study, wait_for

QUIET_S = 1.0


def _claims(tiers: list[Tier]) -> dict[str, float]:
    """job id -> when a worker logged "processing study" (epoch seconds)."""
    found: dict[str, float] = {}
    for tier in tiers:
        for line in tier.text().splitlines():
            if ": processing study " in line and "job " in line:
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                found.setdefault(line.split("job ", 1)[1].split(":", 1)[0], stamp)
    return found


def run(
    server: PostgresServer, folder: Path, workers: int, studies: int, senders: int
) -> dict[str, float]:
    warmups = [make_study(folder / "warm" / str(n), seed=5000 + n) for n in range(workers)]
    batch = [make_study(folder / "batch" / str(n), seed=6000 + n) for n in range(studies)]
    url = server.schema_url(f"bench_{workers}_{os.getpid()}")
    dicom_port = free_port()
    with storescp_receiver(folder / "pacs") as (receiver_port, _):
        config, env = scaled_config(folder, server, url, dicom_port, receiver_port,
                                    quiet_period_s=QUIET_S)  # fmt: skip
        args, logs = ["--config", str(config)], folder / "logs"
        logs.mkdir()
        tiers = [Tier("ingest", [*args, "serve"], env | {"MINIVESS_LOCAL_WORKER": "false"}, logs)]
        journal = Journal(url, password=server.password)
        try:
            tiers[0].wait_log("service ready", 120)
            tiers += [Tier(f"worker-{n}", [*args, "worker"], env, logs) for n in range(workers)]
            for tier in tiers[1:]:
                tier.wait_log("claiming jobs", 120)

            def done(count: int) -> bool:
                return len(journal.list_jobs(("done",))) >= count

            threads, errors = push_concurrently(dicom_port, warmups, workers)
            for thread in threads:
                thread.join()
            wait_for(lambda: done(workers), 300, "warm-up studies")
            started = time.time()
            threads, errors = push_concurrently(dicom_port, batch, senders)
            for thread in threads:
                thread.join()
            wait_for(lambda: done(workers + studies), 3600, "the batch")
            finished = time.time()
            if errors:
                raise SystemExit(f"a push failed: {errors[0]}")
            claims = _claims(tiers[1:])
            waits = [claims[job.job_id] - (job.last_received_at + QUIET_S)
                     for job in journal.list_jobs(("done",))
                     if job.last_received_at >= started and job.job_id in claims]  # fmt: skip
        finally:
            for tier in reversed(tiers):
                tier.stop()
            journal.close()
    waits.sort()
    return {
        "per_hour": studies * 3600 / (finished - started),
        "seconds": finished - started,
        "wait_p50": statistics.median(waits),
        "wait_p95": waits[min(len(waits) - 1, int(0.95 * len(waits)))],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--senders", type=int, default=4)
    args = parser.parse_args(argv)
    bindir = postgres_bin()
    if bindir is None:
        print("PostgreSQL server not installed (Debian package postgresql)", file=sys.stderr)
        return 2
    server = PostgresServer(bindir)
    results = {}
    try:
        server.start()
        for count in (int(n) for n in args.workers.split(",")):
            with tempfile.TemporaryDirectory(prefix="minivess-scaleout-") as folder:
                results[count] = run(server, Path(folder), count, args.studies, args.senders)
    finally:
        server.remove()
    print(f"{args.studies} studies, {args.senders} senders, {os.cpu_count()} cores")
    print("| workers | studies/hour | batch s | queue-to-start p50 | p95 | ratio |")
    print("|---|---|---|---|---|---|")
    base = results[min(results)]["per_hour"]
    for count, r in results.items():
        print(f"| {count} | {r['per_hour']:.0f} | {r['seconds']:.1f} | {r['wait_p50']:.2f} s "
              f"| {r['wait_p95']:.2f} s | {r['per_hour'] / base:.2f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
