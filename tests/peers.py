"""Drive real third-party DICOM software from tests: dicom3tools, dcmtk and Orthanc.

A missing executable fails the test (never skips it): a green run must mean that the
peers really checked our output. Every subprocess gets ``TCP_NODELAY=1`` because Nagle's
algorithm plus delayed ACKs otherwise adds 50-100 ms to each C-STORE.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

PEER_ENV = {**os.environ, "TCP_NODELAY": "1"}

_PACKAGES = {
    "dciodvfy": "dicom3tools",
    "storescu": "dcmtk",
    "echoscu": "dcmtk",
    "Orthanc": "orthanc",
}


def require_executable(name: str) -> str:
    """Absolute path of ``name``, or fail the current test saying what to install."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.fail(f"{name} not found: install {_PACKAGES.get(name, 'it')}", pytrace=False)
    return found


# ---------------------------------------------------------------------------- dciodvfy


@dataclass(frozen=True)
class DciodvfyResult:
    """Verdict of dicom3tools' IOD verifier; its exit status is not reliable, its output is."""

    path: Path
    errors: list[str]
    warnings: list[str]
    output: str

    @property
    def ok(self) -> bool:
        return not self.errors


def run_dciodvfy(path: Path | str) -> DciodvfyResult:
    """Run ``dciodvfy`` on one file and split its output into errors and warnings."""
    exe = require_executable("dciodvfy")
    done = subprocess.run(
        [exe, str(path)], capture_output=True, text=True, timeout=60, env=PEER_ENV, check=False
    )
    output = done.stdout + done.stderr
    lines = output.splitlines()
    return DciodvfyResult(
        path=Path(path),
        errors=[line for line in lines if line.startswith("Error")],
        warnings=[line for line in lines if line.startswith("Warning")],
        output=output,
    )


def assert_dicom_valid(path: Path | str) -> DciodvfyResult:
    """Fail with dciodvfy's error lines unless ``path`` has none."""
    result = run_dciodvfy(path)
    if result.errors:
        raise AssertionError(f"dciodvfy found errors in {path}:\n" + "\n".join(result.errors))
    return result


# ------------------------------------------------------------------------------- dcmtk

# storescu proposes only uncompressed syntaxes unless told; with -R it proposes exactly
# the SOP classes of the files, each with the syntax chosen here plus uncompressed ones.
_STORESCU_TS_FLAG = {
    str(JPEGLSLossless): "-xt",
    str(JPEGLosslessSV1): "-xs",
    str(RLELossless): "-xr",
    str(JPEG2000Lossless): "-xv",
}
_UNCOMPRESSED = {
    str(uid)
    for uid in (
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    )
}


def _dicom_files(files_or_dir: Path | str | Iterable[Path | str]) -> list[Path]:
    if isinstance(files_or_dir, str | Path):
        root = Path(files_or_dir)
        if root.is_dir():
            return sorted(p for p in root.rglob("*") if p.is_file())
        return [root]
    return [Path(p) for p in files_or_dir]


def _transfer_syntax_flags(files: Sequence[Path]) -> list[str]:
    syntaxes = {str(pydicom.filereader.read_file_meta_info(f).TransferSyntaxUID) for f in files}
    compressed = syntaxes - _UNCOMPRESSED
    unknown = compressed - set(_STORESCU_TS_FLAG)
    if unknown or len(compressed) > 1:
        raise ValueError(f"storescu cannot propose these transfer syntaxes together: {syntaxes}")
    return [_STORESCU_TS_FLAG[uid] for uid in compressed]


def _run_dcmtk(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=PEER_ENV, check=False
    )
    output = done.stdout + done.stderr
    failed = [line for line in output.splitlines() if line.startswith(("E:", "F:"))]
    if done.returncode != 0 or failed:
        raise AssertionError(
            f"{Path(cmd[0]).name} failed (exit {done.returncode}): {' '.join(cmd)}\n{output}"
        )
    return done


def storescu(
    host: str,
    port: int,
    aet: str,
    files_or_dir: Path | str | Iterable[Path | str],
    extra_args: Sequence[str] = (),
    *,
    calling_aet: str = "MINIVESS_TEST",
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Send files (or every file under a folder) with dcmtk's ``storescu``; fail on error."""
    exe = require_executable("storescu")
    files = _dicom_files(files_or_dir)
    if not files:
        raise ValueError(f"no files to send in {files_or_dir}")
    cmd = [exe, "-aet", calling_aet, "-aec", aet, "-R", *_transfer_syntax_flags(files)]
    cmd += [*extra_args, host, str(port), *(str(f) for f in files)]
    return _run_dcmtk(cmd, timeout)


def echoscu(
    host: str, port: int, aet: str, *, calling_aet: str = "MINIVESS_TEST", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """C-ECHO with dcmtk's ``echoscu``; fail unless the association and echo succeed."""
    exe = require_executable("echoscu")
    return _run_dcmtk([exe, "-aet", calling_aet, "-aec", aet, host, str(port)], timeout)


# ----------------------------------------------------------------------------- Orthanc


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Orthanc:
    """A running Orthanc started by :func:`run_orthanc`, with small REST helpers."""

    aet: str
    dicom_port: int
    http_port: int
    workdir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    host: str = "127.0.0.1"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "orthanc.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no Orthanc log)"
        return "\n".join(text.splitlines()[-lines:])

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def studies(self) -> list[str]:
        """Orthanc's own identifiers of every stored study."""
        return list(self.get("/studies"))

    def study_id(self, study_instance_uid: str) -> str | None:
        found = self.request("POST", "/tools/find", {
            "Level": "Study", "Query": {"StudyInstanceUID": study_instance_uid},
        })  # fmt: skip
        return found[0] if found else None

    def _study(self, study_instance_uid: str) -> str:
        study = self.study_id(study_instance_uid)
        if study is None:
            raise AssertionError(f"Orthanc has no study {study_instance_uid}")
        return study

    def instances_of_study(self, study_instance_uid: str) -> list[dict[str, Any]]:
        """Every instance of the study (Orthanc JSON, with ``MainDicomTags``)."""
        return list(self.get(f"/studies/{self._study(study_instance_uid)}/instances"))

    def series_of_study(self, study_instance_uid: str) -> list[dict[str, Any]]:
        return list(self.get(f"/studies/{self._study(study_instance_uid)}/series"))

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the process we started, then SIGKILL it if it lingers."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)


def orthanc_config(
    workdir: Path, aet: str, dicom_port: int, http_port: int, extra: dict[str, Any] | None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "Name": "minivess-test",
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        # Orthanc 1.10 cannot bind to loopback only; refusing remote HTTP is what we can do.
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowEcho": True,
        "DicomAssociationCloseDelay": 0,
        "SaveJobs": False,
        "StorageCompression": False,
        "Plugins": [],
    }
    plugins = sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*"))
    if plugins:
        config["Plugins"] = [str(plugins[-1])]
        config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
    config.update(extra or {})
    return config


@contextlib.contextmanager
def run_orthanc(
    workdir: Path,
    *,
    aet: str = "ORTHANC_TEST",
    extra_config: dict[str, Any] | None = None,
    startup_timeout: float = 30,
) -> Iterator[Orthanc]:
    """Start Orthanc on fresh storage in ``workdir`` and stop it (by PID) afterwards."""
    exe = require_executable("Orthanc")
    workdir.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port = free_port(), free_port()
    while http_port == dicom_port:
        http_port = free_port()
    config_path = workdir / "orthanc.json"
    config = orthanc_config(workdir, aet, dicom_port, http_port, extra_config)
    config_path.write_text(json.dumps(config, indent=2))
    log_path = workdir / "orthanc.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [exe, str(config_path)], stdout=log, stderr=subprocess.STDOUT, env=PEER_ENV
        )
    server = Orthanc(aet, dicom_port, http_port, workdir, process)
    try:
        _wait_until_up(server, startup_timeout)
        yield server
    finally:
        server.stop()


def _wait_until_up(server: Orthanc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"Orthanc exited with {server.process.returncode} during start-up:\n"
                + server.log_tail()
            )
        try:
            server.request("GET", "/system", timeout=1)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Orthanc did not answer GET /system on port {server.http_port} within "
                    f"{timeout} s; log tail:\n{server.log_tail()}"
                ) from None
            time.sleep(0.05)


# ------------------------------------------------------------------ test-only reader


@dataclass(frozen=True)
class ReadVolume:
    """Slices as ``volume[s, r, c]`` in output units; ``affine`` maps (c, r, s, 1) to LPS."""

    volume: np.ndarray
    affine: np.ndarray
    datasets: Sequence[pydicom.Dataset]


def read_volume(files: Iterable[Path | str]) -> ReadVolume:
    """Independent, deliberately naive reader: sort by IPP along the normal of IOP.

    Ignores InstanceNumber and file names on purpose; applies Rescale Slope/Intercept.
    """
    datasets = [pydicom.dcmread(f) for f in files]
    if not datasets:
        raise ValueError("no files to read")
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=np.float64)
    for ds in datasets:
        if not np.allclose(np.asarray(ds.ImageOrientationPatient, dtype=np.float64), iop):
            raise ValueError("slices have different ImageOrientationPatient")
    row, column = iop[:3], iop[3:]
    normal = np.cross(row, column)
    datasets.sort(key=lambda ds: float(np.asarray(ds.ImagePositionPatient, float) @ normal))
    positions = np.asarray([ds.ImagePositionPatient for ds in datasets], dtype=np.float64)
    if len(datasets) > 1:
        steps = np.diff(positions, axis=0)
        if not np.allclose(steps, steps[0], atol=1e-3):
            raise ValueError("slices are not evenly spaced")
        step = steps[0]
    else:
        step = normal * float(datasets[0].SliceThickness)
    row_spacing, column_spacing = (float(v) for v in datasets[0].PixelSpacing)
    affine = np.eye(4)
    affine[:3, 0] = row * column_spacing
    affine[:3, 1] = column * row_spacing
    affine[:3, 2] = step
    affine[:3, 3] = positions[0]
    volume = np.stack(
        [
            ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1))
            + float(ds.get("RescaleIntercept", 0))
            for ds in datasets
        ]
    )
    return ReadVolume(volume=volume, affine=affine, datasets=datasets)
