"""DICOM over TLS (PS3.15 B.1): the gateway with real dcmtk ``+tls`` peers, and the export
to a TLS-only Orthanc. HTTPS for the sidecar is tested with the sidecar.

A throwaway PKI (``tests/security_support.py``) per module: CA, server (also used
as our client certificate when exporting), client, and a rogue CA with its own client.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from map_app.pipeline import Pipeline
from service.app import Service
from service.gateway import Gateway
from service.ingest import InstanceIngest
from service.journal import Journal
from service.observability.metrics import ApplianceMetrics
from service.settings import ServiceSettings, SettingsError
from service.spool import Spool
from service.tls import check_tls_settings
from tests.peers import PEER_ENV, require_executable, run_orthanc, storescu
from tests.security_support import Pair, Pki, make_pki
from tests.service_support import (
    MODELS,
    make_study,
    orthanc_sop_uids,
    result_uids,
    settings_for,
    wait_finished,
)

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_settings(var: Path, pki: Pki, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "dicom_tls_cert": pki.server.cert, "dicom_tls_key": pki.server.key,
        "dicom_tls_ca": pki.ca, "dicom_tls_require_client_cert": True,
    }  # fmt: skip
    return settings_for(var, **{**values, **overrides})


@pytest.fixture
def tls_gateway(tmp_path: Path, pki: Pki) -> Iterator[Callable[..., Gateway]]:
    started: list[tuple[Gateway, Journal]] = []

    def start(**overrides: Any) -> Gateway:
        settings = tls_settings(tmp_path / f"var{len(started)}", pki, **overrides)
        journal = Journal(settings.journal_path)
        ingest = InstanceIngest(settings, Spool(settings.spool_dir), journal, ApplianceMetrics())
        gateway = Gateway(settings, ingest)
        gateway.start()
        started.append((gateway, journal))
        return gateway

    yield start
    for gateway, journal in started:
        gateway.stop()
        journal.close()


def tls_args(pki: Pki, pair: Pair | None) -> list[str]:
    """dcmtk: ``+tls key cert`` (authenticated) or ``+tla`` (no certificate), trusting our CA."""
    identity = ["+tls", str(pair.key), str(pair.cert)] if pair else ["+tla"]
    return [*identity, "+cf", str(pki.ca)]


def echo(port: int, extra: list[str]) -> subprocess.CompletedProcess[str]:
    command = [require_executable("echoscu"), "-aec", "MINIVESS", *extra, "127.0.0.1", str(port)]
    return subprocess.run(command, capture_output=True, text=True, env=PEER_ENV, timeout=60)


@pytest.mark.requirement("SRS-070")
def test_dcmtk_echo_and_store_over_tls_with_a_client_certificate(
    tls_gateway: Callable[..., Gateway], pki: Pki, tmp_path: Path
) -> None:
    gateway = tls_gateway()
    done = echo(gateway.port, tls_args(pki, pki.client))
    assert done.returncode == 0, done.stdout + done.stderr
    study = make_study(tmp_path / "study", seed=71)
    storescu("127.0.0.1", gateway.port, "MINIVESS", study.files, tls_args(pki, pki.client))
    (job,) = gateway.ingest.journal.list_jobs()
    assert job.instances == len(study.files)


@pytest.mark.requirement("SRS-070")
def test_plain_anonymous_and_untrusted_peers_are_refused(
    tls_gateway: Callable[..., Gateway], pki: Pki
) -> None:
    gateway = tls_gateway()
    for extra in ([], tls_args(pki, None), tls_args(pki, pki.rogue_client)):
        done = echo(gateway.port, extra)
        assert done.returncode != 0, extra  # plain TCP, no certificate, a stranger's CA
        assert "Association Request Failed" in done.stdout + done.stderr
    # A peer that connects and says nothing holds up no one (handshake in its own thread).
    with socket.create_connection(("127.0.0.1", gateway.port)):
        assert echo(gateway.port, tls_args(pki, pki.client)).returncode == 0
    assert gateway.ingest.journal.list_jobs() == []


@pytest.mark.requirement("SRS-070")
def test_tls_without_client_certificates_when_not_required(
    tls_gateway: Callable[..., Gateway], pki: Pki
) -> None:
    gateway = tls_gateway(dicom_tls_require_client_cert=False)
    assert echo(gateway.port, tls_args(pki, None)).returncode == 0  # encrypted, anonymous
    assert echo(gateway.port, tls_args(pki, pki.client)).returncode == 0
    assert echo(gateway.port, tls_args(pki, pki.rogue_client)).returncode != 0  # must verify
    assert echo(gateway.port, []).returncode != 0  # TLS is still the only way in


@pytest.mark.requirement("SRS-070")
def test_tls_settings_are_checked(tmp_path: Path, pki: Pki) -> None:
    for overrides, message in [
        ({"dicom_tls_key": None}, "set together"),
        ({"dicom_tls_ca": None}, "needs dicom_tls_cert"),
        ({"dicom_tls_ca": tmp_path / "absent.pem"}, "missing: dicom_tls_ca"),
        ({"dicom_tls_key": pki.rogue_ca}, "cannot load"),
    ]:
        # The combinations fail when the settings are read, the files when they are used.
        with pytest.raises(SettingsError, match=message):
            settings = tls_settings(tmp_path / "var", pki, **overrides)
            check_tls_settings(settings)
            ingest = InstanceIngest(settings, Spool(settings.spool_dir),
                                    Journal(settings.journal_path), ApplianceMetrics())  # fmt: skip
            Gateway(settings, ingest)


@pytest.mark.slow
@pytest.mark.requirement("SRS-070", "SRS-044")
def test_study_in_and_results_out_over_tls(tmp_path: Path, pki: Pki) -> None:
    """storescu +tls -> gateway -> pipeline -> C-STORE over TLS to an Orthanc that accepts
    TLS only and requires our certificate."""
    orthanc_tls = {
        "DicomTlsEnabled": True, "DicomTlsCertificate": str(pki.server.cert),
        "DicomTlsPrivateKey": str(pki.server.key), "DicomTlsTrustedCertificates": str(pki.ca),
        "DicomTlsRemoteCertificateRequired": True,
    }  # fmt: skip
    study = make_study(tmp_path / "study", seed=72)
    with run_orthanc(tmp_path / "pacs", aet="TLSPACS", extra_config=orthanc_tls) as pacs:
        destination = {"host": "127.0.0.1", "port": pacs.dicom_port, "ae_title": "TLSPACS",
                       "tls": True}  # fmt: skip
        settings = tls_settings(tmp_path / "var", pki, export_destinations=[destination])
        with Service(settings, pipeline=Pipeline(MODELS)) as service:
            storescu("127.0.0.1", service.gateway.port, "MINIVESS", study.files,
                     tls_args(pki, pki.client))  # fmt: skip
            job = wait_finished(service.journal, study.study_instance_uid, timeout=120)
            assert job.state == "done", job.error
            assert sorted(orthanc_sop_uids(pacs, study.study_instance_uid)) == sorted(
                result_uids(job)
            )
        assert "TLS error" not in pacs.log_tail(200)
