"""Soak: kill -9 at random points, and many studies over many associations at once.

    python -m benchmarks.soak kill [--trials 20] [--seed 1] [--json FILE]
    python -m benchmarks.soak load [--studies 50] [--associations 16] [--max-pending 8]
    python -m benchmarks.soak all  (both, with the figures for the verification report)

Both run the real service (``python -m service serve``) on 127.0.0.1, exporting to a real
Orthanc, and check the promise at the end: every acknowledged instance processed, one job
and one set of results per study at the PACS (SOP Instance UIDs, no duplicates), no result
file that does not read back whole, in the outputs or at the PACS.

``kill``: trial k targets the receive, processing or export phase of its own study (in
turn): it waits for that phase, SIGKILLs the service at a random moment inside it, checks
that every instance acknowledged before the kill is in the journal and that no partial
result is visible, restarts, and (after a kill during receive) sends the study again, as
a PACS whose association broke does. Other studies are wherever they are at that moment.

``load``: ``--associations`` senders share ``--studies`` studies, one association per
study; a study refused with 0xA702 (too many pending: back-pressure) is sent again a
second later. Reports study latency (last instance acknowledged -> results stored at the
PACS, quiet period included) p50/p95, peak RSS of the service and the largest queue seen.
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.soak_support import (
    Sent,
    ServiceProcess,
    check_study,
    incomplete_outputs,
    jobs_by_study,
    make_studies,
    percentile,
    send_study,
    wait_terminal,
)
from service.journal import TERMINAL, Journal
from service.settings import ServiceSettings, load_settings
from synthetic.dicom_series import WrittenSeries
from tests.peers import Orthanc, free_port, run_orthanc

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("receive", "processing", "export")
TOO_MANY_STUDIES = 0xA702


def soak_settings(workdir: Path, orthanc: Orthanc, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "var_dir": workdir / "var", "dicom_port": free_port(), "min_free_disk_bytes": 0,
        "model_dir": ROOT / "models" / "ensemble", "export_backoff_s": 0.5,
        "export_max_backoff_s": 2.0, "export_retries": 100, "export_timeout_s": 10,
        "export_destinations": [{"host": "127.0.0.1", "port": orthanc.dicom_port,
                                 "ae_title": orthanc.aet}],
    }  # fmt: skip
    values.update(overrides)
    return load_settings(environ={}, **values)


def _state(journal: Journal, study_uid: str) -> str:
    jobs = jobs_by_study(journal).get(study_uid, [])
    return jobs[0].state if jobs else "not-yet"


def _wait_state(journal: Journal, study_uid: str, states: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while (state := _state(journal, study_uid)) not in states:
        if time.monotonic() > deadline:
            raise TimeoutError(f"study {study_uid} stayed {state}, waited for {states}")
        time.sleep(0.005)
    return state


def _paced_send(port: int, study: WrittenSeries, rng: random.Random, into: dict[str, Sent]) -> None:
    """A modality's pace: 20-60 ms between slices, so a kill can land mid-receive."""
    into["sent"] = send_study(port, study, pace=lambda: rng.uniform(0.02, 0.06))


def kill_trials(
    workdir: Path, orthanc: Orthanc, trials: int, seed: int = 1, quiet: float = 10.0,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:  # fmt: skip
    """``trials`` kills (receive, processing, export in turn); the figures and problems.

    ``quiet`` must outlast a restart plus the re-send: a study cut off by a kill in its
    receive phase must not be queued before the rest of it arrives.
    """
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    # Every kill during a run counts as an attempt: let the trials, not the limit, decide.
    settings = soak_settings(workdir, orthanc, quiet_period_s=quiet, max_pipeline_attempts=100)
    service = ServiceProcess(settings, workdir)
    studies = make_studies(workdir / "studies", trials, first_seed=700 + 100 * seed)
    port = settings.dicom_port
    problems: list[str] = []
    records: list[dict[str, Any]] = []
    service.start()
    journal = Journal(settings.journal_path)
    try:
        for index, study in enumerate(studies):
            uid, target = study.study_instance_uid, PHASES[index % len(PHASES)]
            outcome: dict[str, Sent] = {}
            if target == "receive":
                sender = threading.Thread(target=_paced_send, args=(port, study, rng, outcome))
                sender.start()
                time.sleep(rng.uniform(0.1, 0.35))  # inside the ~0.3 s paced send
            else:
                send_study(port, study)
                wanted = {"processing"} if target == "processing" else {"exporting"}
                _wait_state(journal, uid, wanted | set(TERMINAL), 300)
                # A warm run takes ~0.3 s, an export of three files ~0.05 s.
                time.sleep(rng.uniform(0, 0.4) if target == "processing" else rng.uniform(0, 0.05))
            at_kill = _state(journal, uid)
            everyone = Counter(job.state for job in journal.list_jobs())
            service.kill()
            if target == "receive":
                sender.join(60)
                acked = outcome["sent"].acked
                lost = [sop for sop in acked if not journal.is_known(sop)]
                if lost:
                    problems.append(f"{uid}: {len(lost)} acknowledged instances not journaled")
            problems += [f"partial result visible: {bad}"
                         for bad in incomplete_outputs(settings.outputs_dir)]  # fmt: skip
            restart = service.start()
            if target == "receive" and not send_study(port, study).complete:
                problems.append(f"{uid}: re-send after restart failed")
            records.append(
                {
                    "trial": index,
                    "target": target,
                    "state_at_kill": at_kill,
                    "jobs_at_kill": dict(everyone),
                    "restart": round(restart, 2),
                }
            )
            say(f"trial {index + 1}/{trials}: killed in {target} (study {at_kill}, all jobs "
                f"{dict(everyone)}), restarted in {restart:.1f} s")  # fmt: skip
        jobs = wait_terminal(journal, [s.study_instance_uid for s in studies], 600)
    finally:
        code = service.stop()
    for study in studies:
        problems += check_study(jobs.get(study.study_instance_uid, []), study, orthanc)
    if code != 0:
        problems.append(f"service exited with {code} on SIGTERM")
    return {
        "trials": trials,
        "kills_by_target": dict(Counter(r["target"] for r in records)),
        "study_state_at_kill": dict(Counter(r["state_at_kill"] for r in records)),
        "max_restart_s": max((float(r["restart"]) for r in records), default=0.0),
        "studies": len(studies),
        "studies_done_once": sum(
            1 for s in studies if not check_study(jobs.get(s.study_instance_uid, []), s, orthanc)
        ),
        "problems": problems,
        "records": records,
    }


def load_run(
    workdir: Path, orthanc: Orthanc, studies: int = 50, associations: int = 16,
    max_pending: int = 8, quiet: float = 2.0, say: Callable[[str], None] = print,
) -> dict[str, Any]:  # fmt: skip
    """``studies`` over ``associations`` concurrent senders; the figures and problems."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings = soak_settings(workdir, orthanc, quiet_period_s=quiet, max_pending_jobs=max_pending,
                             max_associations=associations + 4)  # fmt: skip
    service = ServiceProcess(settings, workdir)
    written = make_studies(workdir / "studies", studies, first_seed=300)
    warmup = make_studies(workdir / "warmup", 1, first_seed=299)[0]
    todo: queue.Queue[Any] = queue.Queue()
    for study in written:
        todo.put(study)
    counts: Counter[str] = Counter()
    samples: list[tuple[float, int, int]] = []
    done_sending = threading.Event()
    service.start()
    journal = Journal(settings.journal_path)
    # The first study after a start pays for the model warm-up (~10 s): not load.
    send_study(settings.dicom_port, warmup)
    first = wait_terminal(journal, [warmup.study_instance_uid], 300)[warmup.study_instance_uid]
    warm_s = (first[0].finished_at or 0) - first[0].last_received_at

    def sender(number: int) -> None:
        while True:
            try:
                study = todo.get_nowait()
            except queue.Empty:
                return
            sent = send_study(settings.dicom_port, study, calling=f"SENDER{number:02d}")
            if sent.complete:
                counts["studies sent"] += 1
                continue
            counts["0xA702 back-pressure" if sent.statuses[-1:] == [TOO_MANY_STUDIES]
                   else "aborted or other"] += 1  # fmt: skip
            time.sleep(1.0)  # as a PACS retries a refused study later
            todo.put(study)

    def sampler() -> None:
        while not done_sending.is_set():
            memory = service.memory()
            samples.append((time.monotonic(), memory["VmRSS"], journal.count_unfinished()))
            time.sleep(0.25)

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    started = time.monotonic()
    threads = [threading.Thread(target=sender, args=(n,)) for n in range(associations)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    jobs = wait_terminal(journal, [s.study_instance_uid for s in written], 600)
    elapsed = time.monotonic() - started
    done_sending.set()
    watcher.join()
    peak = service.memory()["VmHWM"]
    code = service.stop()
    per_study = {s.study_instance_uid: check_study(jobs.get(s.study_instance_uid, []), s, orthanc)
                 for s in written}  # fmt: skip
    problems = [problem for found in per_study.values() for problem in found]
    if code != 0:
        problems.append(f"service exited with {code} on SIGTERM")
    latencies = [job.finished_at - job.last_received_at for s in written
                 for job in jobs.get(s.study_instance_uid, []) if job.finished_at]  # fmt: skip
    rss = [sample[1] for sample in samples]
    half = len(rss) // 2
    say(f"{studies} studies over {associations} associations in {elapsed:.1f} s")
    return {
        "studies": studies,
        "associations": associations,
        "max_pending_jobs": max_pending,
        "quiet_period_s": quiet,
        "warmup_study_latency_s": round(warm_s, 1),
        "wall_s": round(elapsed, 1),
        "studies_lost": sum(1 for s in written if s.study_instance_uid not in jobs),
        "studies_done_once": sum(1 for found in per_study.values() if not found),
        "senders": dict(counts),
        "latency_p50_s": round(percentile(latencies, 0.5), 2),
        "latency_p95_s": round(percentile(latencies, 0.95), 2),
        "peak_rss_mib": round(peak / 2**20),
        "rss_max_first_half_mib": round(max(rss[:half] or [0]) / 2**20),
        "rss_max_second_half_mib": round(max(rss[half:] or [0]) / 2**20),
        "max_unfinished_jobs_seen": max((sample[2] for sample in samples), default=0),
        "problems": problems,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["kill", "load", "all"])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--studies", type=int, default=50)
    parser.add_argument("--associations", type=int, default=16)
    parser.add_argument("--max-pending", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="soak-") as work:
        root = Path(work)
        with run_orthanc(root / "pacs", aet="PACS") as orthanc:
            if args.mode in ("kill", "all"):
                results["kill"] = kill_trials(root / "kill", orthanc, args.trials, args.seed)
            if args.mode in ("load", "all"):
                results["load"] = load_run(root / "load", orthanc, args.studies,
                                           args.associations, args.max_pending)  # fmt: skip
    for name, figures in results.items():
        shown = {k: v for k, v in figures.items() if k != "records"}
        print(f"== {name}\n{json.dumps(shown, indent=2)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(figures["problems"] for figures in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
