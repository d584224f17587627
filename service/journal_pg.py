"""The journal in PostgreSQL: the scaled-out tiers (gateway, workers) share one database.

One connection per :class:`service.journal.Journal` (per process), used under a lock like
the SQLite file; psycopg 3, autocommit with an explicit transaction per :meth:`run`.

When the server goes away (restart, fail-over, network) the connection is re-opened and
the transaction retried, for up to ``reconnect_s``: a transaction that failed before its
COMMIT was rolled back by the server, so running it again is exact. A connection lost
*during* COMMIT leaves the outcome unknown; the retry then meets the job in its new
state (an :class:`~service.job_states.IllegalTransitionError`, logged by the caller's
loop) or claims a second job whose lease then expires: work is repeated, never lost.
Unique-key conflicts and serialization failures (two gateways registering the same
study at once) are retried too: the retry sees the other transaction's rows.

``relaxed`` transactions (instance registrations) commit with ``synchronous_commit=off``,
the counterpart of SQLite's ``synchronous=NORMAL``: the spool file is fsynced first and
the gateway's start-up reconciliation re-registers any file the journal lacks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg import errors
from psycopg.rows import dict_row

from service.journal_db import POSTGRES, Tx

log = logging.getLogger(__name__)
T = TypeVar("T")

# Retried at once (another transaction won a race; the retry sees its rows).
CONFLICTS = (errors.UniqueViolation, errors.SerializationFailure, errors.DeadlockDetected)
MAX_CONFLICT_RETRIES = 5


class JournalUnavailableError(RuntimeError):
    """The journal database could not be reached for ``reconnect_s`` seconds."""


class PostgresDatabase:
    dialect = POSTGRES
    exclusive = False  # gateways and workers in other processes share it

    def __init__(self, url: str, password: str | None = None, reconnect_s: float = 60.0) -> None:
        parts = urlsplit(url)
        if parts.password:
            raise ValueError("journal_url must not carry a password: put it in the secret "
                             "file MINIVESS_JOURNAL_PASSWORD")  # fmt: skip
        self.url, self._password, self.reconnect_s = url, password, reconnect_s
        host = parts.hostname or "localhost"
        self.description = (
            f"postgresql://{parts.username or ''}@{host}:{parts.port or 5432}{parts.path}"
        )
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[dict[str, object]] | None = None
        self._connect_at_start()

    def _connect_at_start(self) -> None:
        """A wrong password or database fails at once; an unreachable server (a database
        pod still starting) is waited for up to ``reconnect_s``."""
        deadline = time.monotonic() + self.reconnect_s
        while True:
            try:
                with self._lock:
                    self._connection()
                return
            except psycopg.OperationalError as error:
                # The server answered (bad password, no such database): libpq reports it
                # as a FATAL message, psycopg without an SQLSTATE. Waiting will not help.
                answered = error.sqlstate is not None or "FATAL:" in str(error)
                if answered or time.monotonic() > deadline:
                    first = (str(error).strip() or type(error).__name__).splitlines()[0]
                    why = "refused" if answered else f"unreachable for {self.reconnect_s:.0f} s"
                    raise JournalUnavailableError(
                        f"journal database {self.description} {why}: {first}"
                    ) from error
                time.sleep(1.0)

    def _connection(self) -> psycopg.Connection[dict[str, object]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            self._conn = psycopg.connect(
                self.url,
                password=self._password,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=5,
                application_name="minivess-journal",
            )
        return self._conn

    def run(self, work: Callable[[Tx], T], *, relaxed: bool = False) -> T:
        conflicts, deadline = 0, None
        with self._lock:
            while True:
                conn = None
                try:
                    conn = self._connection()
                    with conn.transaction():
                        if relaxed:
                            conn.execute("SET LOCAL synchronous_commit TO OFF")
                        result = work(Tx(conn.execute, POSTGRES))  # type: ignore[arg-type]
                    if deadline is not None:
                        log.warning("journal database %s: reconnected", self.description)
                    return result
                except CONFLICTS:
                    conflicts += 1
                    if conflicts > MAX_CONFLICT_RETRIES:
                        raise
                except psycopg.OperationalError as error:
                    if conn is not None and not conn.broken and not conn.closed:
                        raise  # the server answered: a real error of this statement
                    now = time.monotonic()
                    if deadline is not None and now > deadline:
                        raise JournalUnavailableError(
                            f"journal database {self.description} unreachable for "
                            f"{self.reconnect_s:.0f} s: {error}"
                        ) from error
                    if deadline is None:  # one line per outage, not per try
                        first_line = (str(error).strip() or type(error).__name__).splitlines()[0]
                        log.warning("journal database %s: %s; reconnecting",
                                    self.description, first_line)  # fmt: skip
                        deadline = now + self.reconnect_s
                    time.sleep(0.5)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
