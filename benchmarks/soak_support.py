"""What the soak runs share: the service as a real subprocess, studies, a sender, checks.

The service runs exactly as a site runs it (``python -m service --config FILE serve``) so
that SIGKILL, restarts and its memory are real; the destination is a real Orthanc
(:func:`tests.peers.run_orthanc`). Senders are pynetdicom SCUs (one association per
study, TCP_NODELAY), so that every C-STORE status is seen and counted.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt

from service.gateway import on_conn_open
from service.journal import TERMINAL, Job, Journal
from service.settings import ServiceSettings
from synthetic.case import Modality, generate_case
from synthetic.dicom_attributes import StudyIdentity
from synthetic.dicom_series import DicomQuirks, WrittenSeries, write_series
from tests.peers import Orthanc

ROOT = Path(__file__).resolve().parents[1]
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"


def make_studies(folder: Path, count: int, first_seed: int = 500) -> list[WrittenSeries]:
    """``count`` small CT studies (8 slices of 40 x 40), each with its own patient."""
    studies = []
    for seed in range(first_seed, first_seed + count):
        case = generate_case(seed, Modality.CT, spacing=(1.5, 0.6, 0.6), fov_mm=(12, 24, 24))
        identity = StudyIdentity.synthetic(seed, Modality.CT, "soak")
        studies.append(write_series(case, folder / str(seed), DicomQuirks(), identity))
    return studies


def _ae(calling: str, timeout: float = 30) -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(CT_IMAGE, ExplicitVRLittleEndian)
    ae.add_requested_context(VERIFICATION)
    return ae


def echo(port: int) -> bool:
    assoc = _ae("SOAKECHO", 5).associate("127.0.0.1", port, ae_title="MINIVESS")
    try:
        return bool(assoc.is_established and assoc.send_c_echo().Status == 0)
    finally:
        if assoc.is_established:
            assoc.release()


@dataclass
class Sent:
    """What one attempt to send a study got: a status per instance tried, in order."""

    statuses: list[int] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)  # SOP Instance UIDs answered Success
    aborted: bool = False

    @property
    def complete(self) -> bool:
        return not self.aborted and all(code == 0 for code in self.statuses)


def send_study(
    port: int, study: WrittenSeries, calling: str = "SOAK", pace: Callable[[], float] | None = None
) -> Sent:
    """C-STORE the study's files on one association; stop at the first refusal or abort.

    ``pace`` (seconds between instances) stretches the receive phase, as a modality that
    sends slices while it reconstructs them does.
    """
    sent = Sent()
    assoc = _ae(calling).associate("127.0.0.1", port, ae_title="MINIVESS",
                                   evt_handlers=[(evt.EVT_CONN_OPEN, on_conn_open)])  # fmt: skip
    if not assoc.is_established:
        sent.aborted = True
        return sent
    try:
        for path, sop in zip(study.files, study.sop_instance_uids, strict=True):
            if pace is not None:
                time.sleep(pace())
            try:
                status = assoc.send_c_store(path)
            except (RuntimeError, ValueError, OSError):
                sent.aborted = True
                return sent
            if "Status" not in status:  # no response: the peer went away
                sent.aborted = True
                return sent
            sent.statuses.append(int(status.Status))
            if status.Status != 0:
                return sent
            sent.acked.append(sop)
    finally:
        if assoc.is_established:
            assoc.release()
    return sent


class ServiceProcess:
    """``python -m service serve`` with ``settings``; start, SIGKILL, SIGTERM, memory."""

    def __init__(self, settings: ServiceSettings, workdir: Path) -> None:
        self.settings = settings
        self.config = workdir / "service.json"
        self.config.write_text(settings.model_dump_json())
        self.log = workdir / "service.out"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 120) -> float:
        """Start and wait for C-ECHO; the seconds it took."""
        started = time.monotonic()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HOLOSCAN_LOG_LEVEL": "ERROR"}
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "--config", str(self.config), "serve"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.starts += 1
        while not echo(self.settings.dicom_port):
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode}: {self.tail()}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"service did not answer C-ECHO in {timeout} s: {self.tail()}")
            time.sleep(0.1)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(90)

    def memory(self) -> dict[str, int]:
        """Current (VmRSS) and peak (VmHWM) resident bytes of the service process."""
        found = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
        return found

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])


def jobs_by_study(journal: Journal) -> dict[str, list[Job]]:
    found: dict[str, list[Job]] = {}
    for job in journal.list_jobs():
        found.setdefault(job.study_uid, []).append(job)
    return found


def wait_terminal(journal: Journal, studies: list[str], timeout: float) -> dict[str, list[Job]]:
    """Every study's jobs once all are done/failed/dead-lettered (or what there is)."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = jobs_by_study(journal)
        if all(s in jobs and all(j.state in TERMINAL for j in jobs[s]) for s in studies):
            return jobs
        if time.monotonic() > deadline:
            return jobs
        time.sleep(0.2)


def readable_whole(path: Path) -> bool:
    """dcmtk's ``dcmdump`` reads every element to its declared length (pydicom quietly
    accepts a file cut short): exit 0 only for a complete file."""
    done = subprocess.run(["dcmdump", "-q", str(path)], capture_output=True, timeout=60)
    return done.returncode == 0


def incomplete_outputs(outputs: Path) -> list[str]:
    """Result files (``*.dcm``) that do not read back whole: must be none, ever.
    (``*.partial`` files are the writers' temporary names, never results.)"""
    return [str(path.relative_to(outputs)) for path in sorted(outputs.rglob("*.dcm"))
            if not readable_whole(path)]  # fmt: skip


def check_study(job_list: list[Job], study: WrittenSeries, orthanc: Orthanc) -> list[str]:
    """Problems of one study after the run: lost instances, extra jobs, partial results."""
    uid = study.study_instance_uid
    if len(job_list) != 1:
        return [f"{uid}: {len(job_list)} jobs ({[j.state for j in job_list]})"]
    job = job_list[0]
    problems = []
    if job.state != "done":
        problems.append(f"{uid}: {job.state} ({job.error_reason}: {job.error})")
    if job.instances != len(study.files):
        problems.append(f"{uid}: {job.instances} of {len(study.files)} instances processed")
    expected = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                      for p in job.outputs)  # fmt: skip
    held = orthanc_results(orthanc, uid)
    if sorted(held) != expected:
        problems.append(f"{uid}: PACS holds {len(held)} results, expected {len(expected)}")
    return problems


def orthanc_results(orthanc: Orthanc, study_uid: str) -> list[str]:
    """SOP Instance UIDs Orthanc holds in the study; one read back partial shows as such."""
    if orthanc.study_id(study_uid) is None:
        return []
    uids = []
    for instance in orthanc.instances_of_study(study_uid):
        url = f"{orthanc.base_url}/instances/{instance['ID']}/file"
        with urllib.request.urlopen(url, timeout=30) as response:
            data = response.read()
        with tempfile.NamedTemporaryFile(suffix=".dcm") as copy:
            copy.write(data)
            copy.flush()
            whole = readable_whole(Path(copy.name))
        uid = str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)
        uids.append(uid if whole else f"PARTIAL {uid}")
    return uids


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(values: dict[str, Any]) -> str:
    return "\n".join(f"  {key}: {value}" for key, value in values.items())
