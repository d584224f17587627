"""The DICOM gateway: a pynetdicom Verification and Storage SCP in front of the spool.

Association acceptance (PS3.8 7.1.1.9 and 9.3.3.2, A-ASSOCIATE-RJ reasons):

* called AE title other than ours -> rejected-permanent, service-user,
  "called-AE-title-not-recognized" (1, 1, 7);
* an allowlist is configured and the calling AE title + source address is not on
  it -> rejected-permanent, service-user, "calling-AE-title-not-recognized" (1, 1, 3);
* more than ``max_associations`` at once -> rejected-transient, service-provider
  (presentation), "local-limit-exceeded" (2, 3, 2) (pynetdicom's own check).

Presentation contexts (PS3.8 9.3.2.2, PS3.7 D.3.3.2): the SCU proposes them (at most
128); for each proposed (SOP class, transfer syntaxes) we accept the first transfer
syntax of ours (in our order of preference, :func:`supported_transfer_syntaxes`), so
every accepted context carries exactly one transfer syntax. An SCP has no limit on what
it supports: Verification and every CT/MR image storage SOP class of
:data:`service.ingest.IMAGE_STORAGE_SOP_CLASSES`, each in every transfer syntax below
that pydicom can decode here (the pipeline must read the pixels).

C-STORE handling is in :class:`service.ingest.InstanceIngest`; the success status goes back
only after the instance is fsynced into the spool (PS3.4 B.2.3).

Throughput (``python -m benchmarks.ingest_benchmark``): associations run on
:mod:`service.dicom_reactor`'s event-driven reactors instead of pynetdicom's 1 ms polling
loops, we announce ``dicom_max_pdu_bytes`` (1 MiB) so a slice arrives in one or two PDUs
instead of eight, and the Part 10 header is encoded directly (:mod:`service.part10`).

With ``dicom_tls_cert``/``dicom_tls_key`` the port speaks DICOM over TLS only
(:mod:`service.tls`); the AE title and allowlist checks apply on top.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from io import BytesIO
from typing import Any, cast

from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from service.dicom_reactor import EventDrivenRequestHandler
from service.ingest import IMAGE_STORAGE_SOP_CLASSES, InstanceIngest
from service.part10 import file_header
from service.settings import ServiceSettings
from service.storage_status import Reason, record_refusal, refusal
from service.tls import TlsServer, server_context

log = logging.getLogger(__name__)

UNCOMPRESSED = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)
LOSSLESS = (
    JPEGLSLossless,
    RLELossless,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEG2000Lossless,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
)
LOSSY = (JPEGLSNearLossless, JPEG2000, HTJ2K, JPEGBaseline8Bit, JPEGExtended12Bit)

# A-ASSOCIATE-RJ (result, source, reason/diag.), PS3.8 9.3.4.
REJECT_CALLED_AE = (0x01, 0x01, 0x07)
REJECT_CALLING_AE = (0x01, 0x01, 0x03)


def _decodable(syntaxes: tuple[UID, ...]) -> list[UID]:
    found = []
    for uid in syntaxes:
        try:
            if get_decoder(uid).is_available:
                found.append(uid)
        except NotImplementedError:
            continue
    return found


def supported_transfer_syntaxes() -> list[UID]:
    """Our transfer syntaxes in order of preference (PS3.5 10, A.4).

    When a proposed context offers several, pynetdicom accepts the first of this list:
    lossless compressed first (data stays as sent, no transcoding by the sender), then
    uncompressed, then lossy ones last (a sender never compresses lossily for us; data
    that already is lossy is accepted as it is). Compressed syntaxes count only when
    pydicom has a working decoder here.
    """
    return [*_decodable(LOSSLESS), *UNCOMPRESSED, *_decodable(LOSSY)]


def set_nodelay(sock: socket.socket | None) -> None:
    """Disable Nagle: with delayed ACKs it adds 50-100 ms to every C-STORE."""
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def on_conn_open(event: Event) -> None:
    """EVT_CONN_OPEN (acceptor and requestor): TCP_NODELAY on the association's socket."""
    set_nodelay(event.assoc.dul.socket.socket if event.assoc.dul.socket else None)


def start_scp_server(
    ae: AE,
    address: tuple[str, int],
    handlers: list[Any],
    ssl_context: ssl.SSLContext | None = None,
) -> ThreadedAssociationServer:
    """Serve ``ae`` on ``address`` in a background thread, associations on the
    event-driven reactors; as ``AE.start_server(block=False)``, with our server class
    under TLS. ``AE.shutdown()`` stops it."""
    server = ae.make_server(
        address,
        ssl_context=ssl_context,
        evt_handlers=handlers,
        server_class=TlsServer if ssl_context else ThreadedAssociationServer,
        request_handler=EventDrivenRequestHandler,
    )
    ae._servers.append(server)  # AE.shutdown() and server.shutdown() expect it there
    threading.Thread(target=server.serve_forever, name="minivess-dicom-accept",
                     daemon=True).start()  # fmt: skip
    return server


class Gateway:
    """The SCP. ``start()`` returns at once; ``stop()`` ends the server and associations."""

    def __init__(self, settings: ServiceSettings, ingest: InstanceIngest) -> None:
        self.settings = settings
        self.ingest = ingest
        self.ae = AE(ae_title=settings.ae_title)
        self.ae.maximum_associations = settings.max_associations
        self.ae.maximum_pdu_size = settings.dicom_max_pdu_bytes
        self.ae.require_called_aet = False  # checked (and logged) in _on_requested
        self.ae.network_timeout = 60
        self.ae.acse_timeout = 30
        self.ae.dimse_timeout = 60
        self.ae.add_supported_context(Verification, list(UNCOMPRESSED))
        syntaxes = supported_transfer_syntaxes()
        for sop_class in IMAGE_STORAGE_SOP_CLASSES:
            self.ae.add_supported_context(sop_class, syntaxes)
        self._server: ThreadedAssociationServer | None = None
        self._ssl_context = server_context(settings)  # bad TLS files fail here, at start-up

    @property
    def port(self) -> int:
        """The bound port (useful with ``dicom_port=0``)."""
        if self._server is None:
            raise RuntimeError("gateway not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, on_conn_open),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
        ]
        self._server = start_scp_server(
            self.ae, (self.settings.dicom_host, self.settings.dicom_port), handlers,
            self._ssl_context,
        )  # fmt: skip
        log.info(
            "DICOM gateway %s listening on %s:%d%s",
            self.settings.ae_title, self.settings.dicom_host, self.port,
            " (TLS only)" if self._ssl_context else "",
        )  # fmt: skip

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.ae.shutdown()

    # ----------------------------------------------------------------- handlers

    def _on_requested(self, event: Event) -> None:
        """EVT_REQUESTED: reject unknown called AE titles and peers off the allowlist."""
        request = cast(A_ASSOCIATE, event.assoc.requestor.primitive)
        called = str(request.called_ae_title).strip()
        calling = str(request.calling_ae_title).strip()
        address = event.assoc.requestor.address
        reason: tuple[int, int, int] | None = None
        if called != self.settings.ae_title:
            reason = REJECT_CALLED_AE
        elif self.settings.allowlist and not any(
            peer.admits(calling, address) for peer in self.settings.allowlist
        ):
            reason = REJECT_CALLING_AE
        if reason is not None:
            log.warning(
                "rejected association from %s@%s to %s: %s", calling, address, called,
                "called AE title not recognised" if reason == REJECT_CALLED_AE
                else "calling AE title/address not on the allowlist",
            )  # fmt: skip
            event.assoc.acse.send_reject(*reason)
            # As pynetdicom's own rejections do: wait until the A-ASSOCIATE-RJ went out
            # and the peer closed, else the socket is shut before the PDU is sent.
            event.assoc.kill()

    def _on_echo(self, event: Event) -> int:
        """C-ECHO (PS3.7 9.1.5): Success."""
        return 0x0000

    def _on_store(self, event: Event) -> Dataset | int:
        """C-STORE (PS3.4 B.2.3): the status of InstanceIngest, with an Error Comment on failure."""
        request = cast(C_STORE, event.request)
        sop_class = str(request.AffectedSOPClassUID)
        sop_instance = str(request.AffectedSOPInstanceUID)
        try:
            header = file_header(
                sop_class, sop_instance, str(event.context.transfer_syntax),
                implementation_class_uid=self.ae.implementation_class_uid,
                implementation_version_name=self.ae.implementation_version_name or "",
                source_ae_title=str(event.assoc.requestor.ae_title).strip(),
            )  # fmt: skip
        except ValueError:  # pynetdicom validates the UIDs: only a hostile peer gets here
            result = refusal(Reason.INVALID_UID, "Command set UIDs not encodable")
            record_refusal(self.ingest.metrics, "dimse", result)
            return self._failure(result.status, result.comment)
        result = self.ingest.accept(
            header + cast(BytesIO, request.DataSet).getvalue(),
            interface="dimse",
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        )
        if result.ok:
            return result.status
        return self._failure(result.status, result.comment)

    @staticmethod
    def _failure(code: int, comment: str) -> Dataset:
        status = Dataset()
        status.Status = code
        status.ErrorComment = comment
        return status
