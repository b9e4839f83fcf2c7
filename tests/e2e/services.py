"""Private Redis and PostgreSQL servers for fault tests: started on free ports in a temp dir, so a test
can crash and restart them without touching the machine's shared instances (which other work uses).

    with private_redis() as redis:        # redis.url, redis.restart(), redis.kill(), redis.start()
    with private_postgres() as pg:        # pg.url, pg.restart(), pg.stop(), pg.start()

Both are removed when the context exits (and at interpreter exit, should a test die first).
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ..waiting import wait_for
from .stack import free_port

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True) + [Path("/usr/local/bin")]


class PrivateRedis:
    """``redis-server`` without persistence: a restart loses every key, as a crashed cache would."""

    def __init__(self, directory: Path, db: int = 0):
        self.dir = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/{db}"
        self.proc: subprocess.Popen | None = None
        self.log = directory / "redis.log"

    def start(self) -> float:
        import redis

        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(self.dir)]
        self.proc = subprocess.Popen(args, stdout=open(self.log, "a"), stderr=subprocess.STDOUT)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            return wait_for(client.ping, 20, f"redis on port {self.port}", ignore=(Exception,), log=self.log)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: every connection drops and (no persistence) every key is gone."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self, down: float = 0.0) -> float:
        """kill -9, stay down ``down`` seconds, start again (empty); return the seconds it was unreachable."""
        started = time.monotonic()
        self.kill()
        time.sleep(down)
        self.start()
        return time.monotonic() - started

    def close(self) -> None:
        self.kill()


class PrivatePostgres:
    """A throwaway cluster (trust auth) owned by the ``postgres`` user; initdb refuses to run as root."""

    def __init__(self, directory: Path, dbname: str = "faults"):
        self.dir = directory
        self.data = directory / "data"
        self.port = free_port()
        self.dbname = dbname
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"
        self.log = directory / "postgres.log"

    def _bin(self, name: str) -> str:
        for d in PG_BIN_DIRS:
            if (d / name).exists():
                return str(d / name)
        raise RuntimeError(f"no PostgreSQL binary {name!r} in {PG_BIN_DIRS}")

    def _as_postgres(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres(self._bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                          "-E", "UTF8", "--locale=C")
        self.start()
        self.psql(f'CREATE DATABASE "{self.dbname}"', db="postgres")

    def start(self) -> float:
        """Start the server and wait until it accepts connections; return the seconds that took."""
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=300")
        started = time.monotonic()
        self._as_postgres(self._bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                          "-t", "60", "start")
        return time.monotonic() - started

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` is a crash: the postmaster SIGQUITs every backend at once and the next start runs
        crash recovery. (A plain kill -9 of the postmaster leaves orphaned backends holding shared memory,
        so a new server could not start until they noticed; ``immediate`` is the crash that can restart.)
        ``fast`` rolls back open transactions and disconnects clients cleanly."""
        self._as_postgres(self._bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "immediate", down: float = 0.0) -> float:
        """Stop (``mode``), stay down ``down`` seconds, start; return the seconds it was unreachable."""
        started = time.monotonic()
        self.stop(mode)
        time.sleep(down)
        self.start()
        return time.monotonic() - started

    def psql(self, sql: str, db: str | None = None) -> str:
        return self._as_postgres(self._bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                                 "-d", db or self.dbname, "-Atc", sql).stdout

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")


@contextmanager
def _temp_service(factory):
    directory = Path(tempfile.mkdtemp(prefix="faults-"))
    service = factory(directory)

    def cleanup():
        try:
            service.close()
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(cleanup)
    try:
        yield service
    finally:
        cleanup()
        atexit.unregister(cleanup)


@contextmanager
def private_redis(db: int = 0):
    """Yield a started :class:`PrivateRedis` (``.url`` is its REDIS_URL)."""
    with _temp_service(lambda d: PrivateRedis(d, db)) as redis:
        redis.start()
        yield redis


@contextmanager
def private_postgres(dbname: str = "faults"):
    """Yield a started :class:`PrivatePostgres` with an empty database ``dbname`` (``.url`` is its DATABASE_URL)."""
    with _temp_service(lambda d: PrivatePostgres(d, dbname)) as pg:
        pg.init()
        yield pg
