"""A throwaway PostgreSQL server for the tests (Debian's package; no tests here).

:class:`PostgresServer` runs ``initdb`` into a fresh folder under the system temporary
directory and starts ``postgres`` itself on 127.0.0.1 and a free port, with password
(SCRAM) authentication for the user ``minivess``. PostgreSQL refuses to run as root, so
as root (CI) both run as ``nobody`` through ``setpriv``, which execs: the PID the test
holds is the postmaster's, and the server is stopped by that PID (SIGINT: PostgreSQL's
fast shutdown, SIGKILL after a timeout), never by name. ``restart()`` stops and starts it
on the same port and data, as a database fail-over or upgrade would.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from service.journal import Journal
from tests.peers import free_port

USER = "minivess"


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="minivess-pg-"))
        self.data = self.root / "data"
        self.password = uuid.uuid4().hex
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse root
            nobody = pwd.getpwnam("nobody")
            self._as = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                        "--clear-groups"]  # fmt: skip
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as:
            os.chown(pwfile, int(self._as[1].split("=")[1]), int(self._as[2].split("=")[1]))
        subprocess.run(
            [*self._as, str(bindir / "initdb"), "-D", str(self.data), "-U", USER,
             f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        pwfile.unlink()

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 (the server's stderr)
        self.process = subprocess.Popen(
            [*self._as, str(self.bindir / "postgres"), "-D", str(self.data),
             "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
             "-c", f"unix_socket_directories={self.root}", "-c", "max_connections=50"],
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(self.url, password=self.password, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {self.log_tail()}") from None
                time.sleep(0.2)

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # fast shutdown: clients cut, data kept
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        path = self.root / "postgres.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def schema_url(self, schema: str) -> str:
        """A URL whose connections use their own schema (tests stay apart, cheaply)."""
        with psycopg.connect(self.url, password=self.password, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        return f"{self.url}?options=-csearch_path%3D{schema}"

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (tests use their own schema or database)."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.fail("PostgreSQL server not found in /usr/lib/postgresql/*/bin: install "
                    "the Debian package postgresql", pytrace=False)  # fmt: skip
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.fail("setpriv not found (util-linux): needed to run PostgreSQL as nobody",
                    pytrace=False)  # fmt: skip
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.remove()


OpenJournal = Callable[..., Journal]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenJournal]:
    """Opens Journals on one store of each backend (a SQLite file; a PostgreSQL schema of
    its own): each call is another process's view, with its own lease owner."""
    if request.param == "sqlite":
        target: Path | str = tmp_path / "journal.sqlite3"
        password = None
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        target = server.schema_url(f"t_{uuid.uuid4().hex[:12]}")
        password = server.password
    opened: list[Journal] = []

    def open_one(**options: Any) -> Journal:
        journal = Journal(target, password=password, **options)
        opened.append(journal)
        return journal

    yield open_one
    for journal in opened:
        journal.close()
