"""Shared fixtures: real DICOM peers (see tests/peers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.peers import Orthanc, run_orthanc
from tests.service_support import GatewayEnv, StartGateway, start_test_gateway


def pytest_configure(config: pytest.Config) -> None:
    # Traceability (compliance/): which software requirements a test verifies.
    config.addinivalue_line(
        "markers", "requirement(*ids): the software requirements (SRS-xxx) this test verifies"
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Take the builder's CPU kernel caps back out of the environment once tests are collected.

    Importing ``models.builder`` (many test modules do) caps oneDNN, MKL and PyTorch at AVX2
    in ``os.environ`` so that training is reproducible across machines
    (``models/builder/determinism.py``). The appliance never runs with them: left in place,
    every OpenVINO session opened by a test, and every process a test starts, ran AVX2 fp32,
    and the bf16 test did not test bf16. PyTorch, imported during collection, keeps its cap.
    """
    import os

    from models.builder.determinism import PINNED_KERNELS

    for name in PINNED_KERNELS:
        os.environ.pop(name, None)


@pytest.fixture(autouse=True, scope="session")
def _audit_log_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Audit entries written by code under test go to a throwaway log, not var/audit."""
    import os

    os.environ.setdefault(
        "MINIVESS_AUDIT_LOG", str(tmp_path_factory.mktemp("audit") / "audit.jsonl")
    )


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """A fresh Orthanc (empty storage, free ports) for one test, stopped afterwards.

    Function scope on purpose: tests count what Orthanc stored, so none may see
    another's instances. Start-up costs ~0.5 s, the SIGTERM shutdown a few seconds.
    """
    with run_orthanc(tmp_path / "orthanc") as server:
        yield server


@pytest.fixture
def make_orthanc(tmp_path: Path) -> Iterator[Callable[..., Orthanc]]:
    """Factory for Orthancs with extra configuration (e.g. ``DicomModalities``).

    ``make_orthanc(name, extra_config={...}, aet="...")``; all are stopped at teardown.
    """
    with ExitStack() as stack:

        def start(name: str = "orthanc", **kwargs: Any) -> Orthanc:
            return stack.enter_context(run_orthanc(tmp_path / name, **kwargs))

        yield start


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[StartGateway]:
    """Start gateways (no pipeline) on free ports; all stopped at teardown."""
    started: list[GatewayEnv] = []

    def start(**overrides: Any) -> GatewayEnv:
        started.append(start_test_gateway(tmp_path / f"var{len(started)}", **overrides))
        return started[-1]

    yield start
    for env in started:
        env.stop()
