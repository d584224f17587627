"""DICOM over TLS (PS3.15 B.1, "Basic TLS Secure Transport Connection Profile").

The gateway's port speaks TLS only once ``dicom_tls_cert`` and ``dicom_tls_key`` are set:
a plain TCP sender then fails the handshake and never reaches the association (no
A-ASSOCIATE-RQ is read). TLS 1.2 is the floor, as BCP 195 (RFC 9325) and dcmtk's default
"non-downgrading BCP 195" profile ask; Python's default cipher list is the BCP 195 one
(ECDHE with AES-GCM or ChaCha20). ``dicom_tls_require_client_cert`` makes the senders
authenticate with a certificate from ``dicom_tls_ca`` (mutual TLS), on top of the AE
title / address allowlist. Export destinations with ``tls: true`` are verified against
``dicom_tls_ca`` (or the system CAs) and their host name; our certificate goes along as
the client certificate.

pynetdicom does the server handshake inside its accept loop, with a blocking socket: one
peer that connects and stays silent would stop every other sender. :class:`TlsServer`
moves the handshake into the association's own thread, with a time limit.
"""

from __future__ import annotations

import logging
import socket
import ssl

from pynetdicom.transport import ThreadedAssociationServer

from service.settings import ServiceSettings, SettingsError

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0


def check_tls_settings(settings: ServiceSettings) -> None:
    """Raise SettingsError when a DICOM TLS file is missing (the combinations are
    checked by ``ServiceSettings`` itself)."""
    missing = [entry for entry in settings.missing_files() if entry.startswith("dicom_tls")]
    if missing:
        raise SettingsError(f"TLS file(s) missing: {', '.join(missing)}")


def _floor(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def server_context(settings: ServiceSettings) -> ssl.SSLContext | None:
    """The gateway's TLS context, or None when the port is plain TCP."""
    check_tls_settings(settings)
    if settings.dicom_tls_cert is None or settings.dicom_tls_key is None:
        return None
    context = _floor(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    try:
        context.load_cert_chain(settings.dicom_tls_cert, settings.dicom_tls_key)
        if settings.dicom_tls_ca is not None:
            context.load_verify_locations(cafile=settings.dicom_tls_ca)
    except (ssl.SSLError, OSError) as error:
        raise SettingsError(f"cannot load the DICOM TLS certificate/key/CA: {error}") from error
    if settings.dicom_tls_require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
    elif settings.dicom_tls_ca is not None:
        context.verify_mode = ssl.CERT_OPTIONAL  # a certificate, if sent, must verify
    return context


def client_context(settings: ServiceSettings) -> ssl.SSLContext:
    """The export SCU's context: verify the destination, present our certificate."""
    check_tls_settings(settings)
    context = _floor(ssl.create_default_context(ssl.Purpose.SERVER_AUTH))
    try:
        if settings.dicom_tls_ca is not None:
            context.load_verify_locations(cafile=settings.dicom_tls_ca)
        if settings.dicom_tls_cert is not None and settings.dicom_tls_key is not None:
            context.load_cert_chain(settings.dicom_tls_cert, settings.dicom_tls_key)
    except (ssl.SSLError, OSError) as error:
        raise SettingsError(f"cannot load the DICOM TLS certificate/key/CA: {error}") from error
    return context


class TlsServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the TLS handshake in the per-connection thread."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client, address = self.socket.accept()
        return client, address

    def process_request_thread(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        assert isinstance(request, socket.socket) and self.ssl_context is not None
        address = client_address[0] if isinstance(client_address, tuple) else client_address
        try:
            request.settimeout(HANDSHAKE_TIMEOUT_S)
            wrapped = self.ssl_context.wrap_socket(request, server_side=True)
            wrapped.settimeout(None)
        except OSError as error:  # ssl.SSLError, a timeout or a reset: no association
            log.warning("TLS handshake with %s failed: %s", address, error)
            self.shutdown_request(request)
            return
        super().process_request_thread(wrapped, client_address)  # type: ignore[arg-type]
