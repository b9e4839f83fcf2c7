"""The production-style stack for browser tests: daphne and a Celery worker (with beat) as real
processes, on the test database and the machine's Redis."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, proc: subprocess.Popen, log_path: Path | None = None,
                       timeout: float = 120.0) -> None:
    """Poll ``url`` until it answers; fail with the log's tail if the process exits or time runs out."""
    def tail() -> str:
        return log_path.read_text()[-2000:] if log_path and log_path.exists() else ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}:\n{tail()}") from None
            time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{tail()}")


def database_url(settings_dict: dict) -> str:
    user = settings_dict.get("USER") or "postgres"
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{settings_dict['NAME']}"


@contextmanager
def running_stack(db_url: str, redis_url: str, log_dir: Path, *, worker: bool = True):
    """Yield the base URL of a daphne server (and run a Celery worker + beat beside it)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": db_url,
           "REDIS_URL": redis_url, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    port = free_port()
    procs = []
    logs = []

    def start(name, args):
        log = open(log_dir / f"{name}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))

    start("daphne", [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"])
    if worker:
        start("celery", [sys.executable, "-m", "celery", "-A", "config", "worker", "-B", "-Q", "celery,generation",
                         "--pool=solo", "--loglevel=INFO", "-s", str(log_dir / "celerybeat-schedule")])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base + "/", procs[0], log_dir / "daphne.log", timeout=30)
        yield base
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()
