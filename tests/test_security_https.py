"""HTTPS for the HTTP sidecar: a configured certificate, verified by clients; no plain HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from map_app.pipeline import Pipeline
from service.app import Service
from service.settings import SettingsError
from tests.peers import free_port
from tests.security_support import Pki, make_pki
from tests.service_support import MODELS, settings_for


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_service(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Service]:
    settings = settings_for(
        tmp_path_factory.mktemp("https") / "var",
        http_tls_cert=pki.server.cert,
        http_tls_key=pki.server.key,
        metrics_port=free_port(),
        dev_mode=True,
    )
    with Service(settings, pipeline=Pipeline(MODELS), http=True) as service:
        yield service


def _port(service: Service) -> int:
    assert service.http is not None
    return service.http.port


@pytest.mark.requirement("SRS-078")
def test_sidecar_serves_https_with_the_configured_certificate(
    https_service: Service, pki: Pki
) -> None:
    response = requests.get(f"https://127.0.0.1:{_port(https_service)}/livez", verify=pki.ca,
                            timeout=10)  # fmt: skip
    assert response.status_code == 200


@pytest.mark.requirement("SRS-078")
def test_clients_refuse_a_certificate_from_another_ca(https_service: Service, pki: Pki) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://127.0.0.1:{_port(https_service)}/livez", verify=pki.rogue_ca,
                     timeout=10)  # fmt: skip


@pytest.mark.requirement("SRS-078")
def test_plain_http_is_not_served(https_service: Service) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{_port(https_service)}/livez", timeout=10)


def test_half_configured_https_is_refused(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(SettingsError, match="http_tls_cert and http_tls_key must be set together"):
        settings_for(tmp_path / "var", http_tls_cert=pki.server.cert)


@pytest.mark.requirement("SRS-078", "SRS-083")
def test_the_metrics_port_serves_https_with_the_same_certificate(
    https_service: Service, pki: Pki
) -> None:
    port = https_service.settings.metrics_port
    response = requests.get(f"https://127.0.0.1:{port}/metrics", verify=pki.ca, timeout=10)
    assert response.status_code == 200
    assert "minivess_queue_depth" in response.text
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
