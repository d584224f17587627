"""Where the journal's rows live: one interface, two backends, the SQL that differs in one place.

:class:`service.journal.Journal` writes its SQL once, with ``?`` placeholders, and runs
it through a :class:`Database`:

- :class:`SqliteDatabase` (the default, one host): a file in ``var/`` (WAL), one
  connection per durability level behind a process lock, ``BEGIN IMMEDIATE``
  transactions. It is :attr:`Database.exclusive`: one process owns the file, so a
  restart may put every interrupted run back in the queue.
- :class:`service.journal_pg.PostgresDatabase` (scaled out: gateway and workers in
  several processes or pods): one connection per journal, re-opened after the server
  went away, every transaction retried when the connection was lost before it committed.

:class:`Dialect` is the whole difference between the two in SQL: the placeholder, the
two-argument max/min, ``FOR UPDATE SKIP LOCKED`` on a claim, how to list a table's
columns, and schema additions only PostgreSQL needs. Nothing else in the journal knows
which backend it runs on.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Dialect:
    """The SQL that differs between SQLite and PostgreSQL; the journal's SQL uses these."""

    name: str
    placeholder: str  # what each ``?`` of the journal's SQL becomes
    greatest: str  # two-argument max: SQLite's scalar MAX(), PostgreSQL's GREATEST()
    least: str
    skip_locked: str  # appended to a claim's SELECT: rows another worker holds are skipped
    columns_sql: str  # one row per column of ``jobs``, its name in ``name``
    extra_schema: tuple[str, ...] = ()
    # Taken first by the transaction that creates or migrates the schema: processes
    # starting together must not race on CREATE/ALTER (PostgreSQL's DDL is not
    # idempotent under concurrency even with IF NOT EXISTS).
    schema_lock: str | None = None

    def sql(self, text: str) -> str:
        # The journal's SQL has no string literal holding '?' or '%', so this is exact.
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)


SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    greatest="MAX",
    least="MIN",
    # One writer at a time (BEGIN IMMEDIATE) already keeps two claims apart.
    skip_locked="",
    columns_sql="SELECT name FROM pragma_table_info('jobs')",
)

POSTGRES = Dialect(
    name="postgresql",
    placeholder="%s",
    greatest="GREATEST",
    least="LEAST",
    # Concurrent workers each lock the row they claim and pass over the others' rows.
    skip_locked=" FOR UPDATE SKIP LOCKED",
    columns_sql="SELECT column_name AS name FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = 'jobs'",
    extra_schema=(
        # Two gateway processes receiving the same new study at once: the second INSERT
        # of an open job fails (unique) and its retried transaction joins the first one's.
        "CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_open ON jobs(study_uid) "
        "WHERE state = 'received'",
    ),
    schema_lock="SELECT pg_advisory_xact_lock(7154981016)",
)


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx:
    """One transaction: ``execute`` takes the journal's ``?`` SQL on either backend."""

    def __init__(self, execute: Callable[[str, Sequence[object]], Cursor], dialect: Dialect):
        self._execute = execute
        self.dialect = dialect

    def execute(self, sql: str, args: Sequence[object] = ()) -> Cursor:
        return self._execute(self.dialect.sql(sql), args)

    def one(self, sql: str, args: Sequence[object] = ()) -> Row | None:
        row: Row | None = self.execute(sql, args).fetchone()
        return row

    def all(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        return list(self.execute(sql, args).fetchall())


class Database(Protocol):
    dialect: Dialect
    # True when one process owns the journal (a SQLite file): what it finds `processing`
    # at start was cut short by its own restart. False: other processes may be running.
    exclusive: bool
    description: str  # for logs and errors: the file or host/database, never a password

    def run(self, work: Callable[[Tx], T], *, relaxed: bool = False) -> T:
        """``work`` in one transaction, committed when it returns; ``relaxed``: the
        commit need not be flushed before returning (instance registrations)."""
        ...

    def close(self) -> None: ...


def init_schema(tx: Tx, schema: str, added_columns: Mapping[str, str]) -> None:
    """Create the tables and indexes (idempotent) and add the columns of later releases."""
    if tx.dialect.schema_lock:
        tx.execute(tx.dialect.schema_lock)
    for statement in schema.split(";"):
        if statement.strip():
            tx.execute(statement)
    for statement in tx.dialect.extra_schema:
        tx.execute(statement)
    present = {str(row["name"]) for row in tx.all(tx.dialect.columns_sql)}
    for name, definition in added_columns.items():
        if name not in present:
            tx.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")


def _sqlite_connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """Autocommit mode (transactions are explicit), WAL, ``synchronous`` as given
    (``FULL`` or ``NORMAL``), waiting up to 10 s for a lock."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=10000")
    return db


class SqliteDatabase:
    """The journal file (one host). Job transitions commit with ``synchronous=FULL``;
    ``relaxed`` transactions (instance registrations) use a second connection with
    ``synchronous=NORMAL`` (the next FULL commit syncs them; see service.journal)."""

    dialect = SQLITE
    exclusive = True

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.description = str(path)
        self._lock = threading.RLock()
        self._db = _sqlite_connect(path, "FULL")
        self._relaxed = _sqlite_connect(path, "NORMAL")

    @contextmanager
    def _tx(self, db: sqlite3.Connection) -> Iterator[Tx]:
        with self._lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(db.execute, SQLITE)  # type: ignore[arg-type]
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def run(self, work: Callable[[Tx], T], *, relaxed: bool = False) -> T:
        with self._tx(self._relaxed if relaxed else self._db) as tx:
            return work(tx)

    def close(self) -> None:
        with self._lock:
            self._relaxed.close()
            self._db.close()


def open_database(target: Path | str, password: str | None = None) -> Database:
    """A SQLite file for a path (or a ``sqlite:///`` URL), PostgreSQL for a
    ``postgresql://`` (or ``postgres://``) URL."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        from service.journal_pg import PostgresDatabase  # psycopg only when scaled out

        return PostgresDatabase(text, password)
    if text.startswith("sqlite:///"):
        return SqliteDatabase(Path(text.removeprefix("sqlite://")))
    if "://" in text:
        raise ValueError(f"journal: unsupported URL scheme in {text.split('://')[0]}:// "
                         "(postgresql:// or a SQLite file path)")  # fmt: skip
    return SqliteDatabase(Path(text))
