"""Event-driven reactors for the gateway's pynetdicom associations.

Why it exists: pynetdicom 3.0 runs two polling loops per association. The DUL thread
sleeps 1 ms whenever a turn found nothing to do (``DULServiceProvider._run_loop_delay``,
marked upstream "TODO: try and make this event based"); the association thread sleeps
1 ms at the top of every turn (``Association._run_reactor``). A C-STORE crosses both
loops on the way in (PDUs -> DIMSE message -> handler) and the DUL loop again on the way
out (the response), so each instance waited 2-3 ms in sleeps. With these reactors and
1 MiB PDUs a do-nothing pynetdicom Storage SCP takes 1.7x (128 KiB slices) to 1.9x
(512 KiB) the instances/s of the stock one from dcmtk ``storescu`` (``python -m
benchmarks.ingest_benchmark``, one association; what remains is pynetdicom's CPU).
That is a gain in ingest only: end to end, ingest is not the appliance's bottleneck
(pynetdicom's own ceiling is 0.2-0.4x storescp here; inference takes minutes), so this
module is kept only while that gain is worth the upkeep below. The one part that is
about safety, not speed (:class:`EventDrivenRequestHandler` bounds each read from a
peer by the network timeout, so a peer stalled inside a PDU cannot hold a worker), is
offered upstream on its own in service/upstream/pynetdicom-stalled-peer.md, and must
stay (on pynetdicom's own ``RequestHandler``) if the reactors go.

Here both loops block until there is work:

* the DUL thread waits in ``select()`` on the peer's socket and on a wake-up socket that
  :meth:`EventDrivenDUL.send_pdu` (a response or ACSE primitive to send) and
  :meth:`EventDrivenDUL.stop_dul` poke;
* the association thread waits on :attr:`EventDrivenDUL.user_work`, which the DUL thread
  sets after every state-machine action (a DIMSE message or an ACSE primitive may be
  waiting for it).

Both waits also end after :data:`IDLE_WAIT_S`, so the timers (ARTIM, network/idle
timeout) and a vanished peer are still noticed, as upstream's loops notice them. Only
the gateway's acceptor associations use them (:class:`EventDrivenRequestHandler`); the
export's requestor associations keep pynetdicom's reactors.

pynetdicom internals it depends on, as written in pynetdicom 3.0.4 (the version uv.lock
pins; pyproject.toml pins it exactly; :data:`TESTED_PYNETDICOM`, checked by
tests/test_dicom_reactor.py, which fails on any other version):

* copies, changed: ``DULServiceProvider.run_reactor`` (its sleep becomes
  :meth:`EventDrivenDUL._wait_for_work`, its exception branch
  :meth:`EventDrivenDUL._abort_hard`) and ``Association._run_reactor`` (the sleep becomes
  a wait on ``user_work``; a network timeout always aborts, whatever
  ``network_timeout_response`` says);
* overrides: ``DULServiceProvider.send_pdu``, ``kill_dul`` and ``stop_dul`` (its
  ``Sta1``/``_kill_thread`` rule), and the private ``RequestHandler._create_association``;
* private state read or set: the DUL's ``_kill_thread``, ``_idle_timer``,
  ``artim_timer``, ``event_queue``, ``state_machine``, ``socket`` (an
  ``AssociationSocket``; its ``.socket`` is the peer's), ``_process_recv_primitive()``
  and ``_is_transport_event()``; the association's ``_dul_ready``, ``_started_dul``,
  ``_kill``, ``_is_paused``, ``_reactor_checkpoint`` and ``_serve_request()``;
* behaviour assumed: ``Association.run_reactor`` runs ``_run_reactor`` once an acceptor
  is established; ``AssociationSocket(client_socket=...)`` puts ``Evt5`` on the DUL's
  ``event_queue`` (:func:`make_event_driven` hands that queue to the new DUL); the
  ``acse_timeout``/``network_timeout`` setters write the DUL's timers; ``Association``
  keeps its state in instance attributes, so swapping ``__class__`` to a subclass that
  adds only methods is safe; ``DULServiceProvider._read_pdu_data`` treats a timed-out
  ``recv()`` as a closed connection (``Evt17``).

A pynetdicom upgrade must re-check: diff each function named above (and
``Association.kill``, ``AssociationSocket.recv``) against 3.0.4 and carry the changes
into the copies here, or drop this module if upstream's loops became event-driven; drop
the ``settimeout`` of :class:`EventDrivenRequestHandler` if upstream took the
stalled-peer fix; then raise :data:`TESTED_PYNETDICOM` with the pin, run
tests/test_dicom_reactor.py and tests/test_dicom_reactor_endings.py, and measure the
gain again with ``benchmarks.ingest_benchmark``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import threading
from typing import TYPE_CHECKING, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import RequestHandler

if TYPE_CHECKING:
    from pynetdicom.dul import _PDUPrimitiveType

log = logging.getLogger(__name__)

TESTED_PYNETDICOM = "3.0.4"
# Longest a loop waits without news: bounds how late a timer or a closed peer is seen.
IDLE_WAIT_S = 0.05


class EventDrivenDUL(DULServiceProvider):
    """pynetdicom's DUL provider, waiting on its sockets instead of sleeping."""

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        # Set after each state-machine action: the association thread may have work.
        self.user_work = threading.Event()
        self._wake_recv, self._wake_send = socket.socketpair()
        self._wake_recv.setblocking(False)
        self._wake_send.setblocking(False)

    def send_pdu(self, primitive: _PDUPrimitiveType) -> None:
        super().send_pdu(primitive)
        self._poke()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._poke()

    def stop_dul(self) -> bool:
        if self.state_machine.current_state == "Sta1":
            self._kill_thread = True  # as upstream does, but woken now, not in 50 ms
            self._poke()
        return super().stop_dul()

    def _poke(self) -> None:
        with contextlib.suppress(OSError):  # a byte already waiting is enough; closed: done
            self._wake_send.send(b"\0")

    def _wait_for_work(self) -> None:
        """Block until the peer sent data, the user queued a primitive, or IDLE_WAIT_S."""
        waitables: list[socket.socket] = [self._wake_recv]
        peer = self.socket.socket if self.socket is not None else None
        if peer is not None and peer.fileno() != -1:
            if isinstance(peer, ssl.SSLSocket) and peer.pending():
                return  # decrypted bytes already buffered: select() cannot see them
            waitables.append(peer)
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile: the turn sees it
            select.select(waitables, [], [], IDLE_WAIT_S)
        with contextlib.suppress(OSError):
            while self._wake_recv.recv(4096):
                pass

    def run_reactor(self) -> None:
        """pynetdicom's DUL loop with :meth:`_wait_for_work` as its idle wait."""
        self._idle_timer.start()
        idle = False
        try:
            while True:
                if not self.assoc._dul_ready.is_set():
                    self.assoc._dul_ready.set()
                    idle = True
                if idle:
                    self._wait_for_work()
                if self._kill_thread:
                    break
                if self.artim_timer.expired:
                    self.event_queue.put("Evt18")
                try:
                    # One primitive to send or one PDU received per turn, as upstream.
                    if self._process_recv_primitive():
                        pass
                    elif self._is_transport_event():
                        self._idle_timer.restart()
                except Exception:
                    log.exception("DUL reactor failed: aborting the association")
                    self._abort_hard()
                    return
                try:
                    event = self.event_queue.get(block=False)
                except queue.Empty:
                    idle = True
                    continue
                self.state_machine.do_action(event)
                self.user_work.set()
                idle = False
        finally:
            self.user_work.set()  # the association thread sees the DUL gone at once
            self._wake_recv.close()
            self._wake_send.close()

    def _abort_hard(self) -> None:
        """As upstream: bypass the state machine, send A-ABORT, stop both reactors."""
        abort = A_ABORT_RQ()
        abort.source = 0x02
        abort.reason_diagnostic = 0x00
        if self.socket is not None:
            self.socket.send(abort.encode())
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True


class EventDrivenAssociation(Association):
    """An acceptor association whose reactor waits for its DUL instead of sleeping.

    Made only by :func:`make_event_driven` from an association pynetdicom configured.
    """

    dul: EventDrivenDUL

    def _run_reactor(self) -> None:
        """pynetdicom's acceptor loop; the 1 ms sleep per turn is a wait on the DUL."""
        self._is_paused = False
        while not self._kill:
            # Clear before looking: news after the look sets it again for the next wait.
            self.dul.user_work.wait(IDLE_WAIT_S)
            self.dul.user_work.clear()
            # A send_*() of ours may pause the reactor (upstream's checkpoint).
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            context_id, message = self.dimse.get_msg(block=False)
            if message:
                self._serve_request(message, cast(int, context_id))
            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                log.debug("association released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return
            if self.acse.is_aborted():
                self.dul.receive_pdu(wait=False)  # EVT_ACSE_RECV for the A-ABORT
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return
            if not self.dul.is_alive():
                self.kill()
                return
            if self.dul.idle_timer_expired():  # the gateway answers a timeout by A-ABORT
                log.error("network timeout: aborting the association")
                self.abort()
                self.kill()
                return


def make_event_driven(assoc: Association) -> EventDrivenAssociation:
    """Give a configured, not yet started acceptor association the event-driven reactors."""
    if assoc._started_dul:
        raise RuntimeError("the association's DUL already runs")
    dul = EventDrivenDUL(assoc)
    dul.socket = assoc.dul.socket
    dul.event_queue = assoc.dul.event_queue  # holds Evt5, put there by the new socket
    assoc.dul = dul
    # The timers live in the DUL: the setters write them through to the new one.
    assoc.acse_timeout = assoc.acse_timeout
    assoc.network_timeout = assoc.network_timeout
    # The subclass adds behaviour only (its state lives in the DUL), so the switch is safe.
    assoc.__class__ = EventDrivenAssociation
    return cast(EventDrivenAssociation, assoc)


class EventDrivenRequestHandler(RequestHandler):
    """The server's per-connection handler: pynetdicom's, with event-driven reactors.

    Also bounds every read from the peer by the network timeout: pynetdicom leaves the
    accepted socket blocking without a timeout, so a peer that sent part of a PDU and
    then went quiet held its DUL thread in ``recv()`` for ever, and with it one of the
    ``max_associations`` slots (ten such peers turned every sender away). A timed-out
    read is a closed connection to the DUL (Evt17), which ends the association.
    """

    def _create_association(self) -> Association:
        assoc = make_event_driven(super()._create_association())
        self.request.settimeout(assoc.network_timeout)
        return assoc
