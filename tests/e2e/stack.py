"""The production-style stack for browser and fault tests: the ASGI server (config.serve, as production starts
it) and a Celery worker (with beat) as real processes, on the test database and the machine's Redis."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import psutil

from ..waiting import wait_until_serving

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url(settings_dict: dict) -> str:
    user = settings_dict.get("USER") or "postgres"
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{settings_dict['NAME']}"


class Stack:
    """The ASGI server ("asgi": config.serve's default server, ``workers`` processes on one port) and optionally a
    Celery worker with beat, as subprocesses that a test may kill -9 and start again: the server comes back on the
    same port, so clients reconnect to the same URL."""

    def __init__(self, db_url: str, redis_url: str, log_dir: Path, *, worker: bool = True,
                 env: dict[str, str] | None = None, server: str | None = None, workers: int = 1):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self.worker = worker
        self.serve_options = [*(["--server", server] if server else []), "--workers", str(workers)]
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": db_url,
                    "REDIS_URL": redis_url, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts: dict[str, int] = {}
        self._logs = []

    def start(self, name: str) -> subprocess.Popen:
        args = {
            # config.serve: the ASGI server with the settings' websocket limits, as in production
            "asgi": [sys.executable, "-m", "config.serve", *self.serve_options, "-b", "127.0.0.1",
                     "-p", str(self.port)],
            "celery": [sys.executable, "-m", "celery", "-A", "config", "worker", "-B", "-Q", "celery,generation",
                       "--pool=solo", "--loglevel=INFO", "-s", str(self.log_dir / "celerybeat-schedule")],
        }[name]
        self.starts[name] = self.starts.get(name, 0) + 1
        suffix = "" if self.starts[name] == 1 else f"-{self.starts[name]}"  # a restart keeps the first log
        log = open(self.log_dir / f"{name}{suffix}.log", "w")
        self._logs.append(log)
        self.procs[name] = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if name == "asgi":
            wait_until_serving(self.base + "/", self.procs[name], Path(log.name), timeout=30)
        return self.procs[name]

    def kill(self, name: str) -> None:
        """SIGKILL to the process and its workers, as a crash of the whole server would: no shutdown handlers,
        open sockets simply drop."""
        proc = self.procs[name]
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        for child in children:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(timeout=10)
        psutil.wait_procs(children, timeout=10)

    def __enter__(self) -> Stack:
        try:
            if self.worker:
                self.start("celery")
            self.start("asgi")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        procs = list(self.procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in self._logs:
            log.close()


@contextmanager
def running_stack(db_url: str, redis_url: str, log_dir: Path, *, worker: bool = True):
    """Yield the base URL of the ASGI server (and run a Celery worker + beat beside it)."""
    with Stack(db_url, redis_url, log_dir, worker=worker) as stack:
        yield stack.base
