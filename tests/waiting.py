"""The one wait-for loop of the tests and benchmarks: poll until something is true, or fail saying what.

Used by the end-to-end stack (tests/e2e), the fault tests (tests/faults), the worker-crash test and the
benchmarks (benchmarks/load.py, benchmarks/generation.py).
"""
from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path


class WaitFailed(AssertionError):
    """Time ran out, or the process being waited for exited first."""


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-2000:] if log and log.exists() else ""


def wait_for(predicate: Callable[[], object], timeout: float, what: str | Callable[[], str], *, poll: float = 0.1,
             ignore: tuple[type[BaseException], ...] = (), explain: Callable[[], str] | None = None,
             proc: subprocess.Popen | None = None, log: Path | None = None) -> float:
    """Call ``predicate`` every ``poll`` seconds until it returns something true; return the seconds it took.

    Exceptions of the types in ``ignore`` count as "not yet" (a server that is still down). Fails with
    ``WaitFailed`` when ``timeout`` runs out, or at once when ``proc`` has exited, with ``what`` (a string or a
    function giving one), ``explain()`` and the tail of ``log``."""
    started = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except ignore:
            pass
        if proc is not None and proc.poll() is not None:
            raise WaitFailed(f"{proc.args[:4]} exited with {proc.returncode} while waiting for "
                             f"{what() if callable(what) else what}:\n{_tail(log)}")
        if time.monotonic() - started >= timeout:
            detail = "; ".join(filter(None, [explain() if explain else "", _tail(log)]))
            raise WaitFailed(f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}"
                             + (f"; {detail}" if detail else ""))
        time.sleep(poll)


def answers(url: str) -> bool:
    urllib.request.urlopen(url, timeout=1)  # noqa: S310 (a local test server)
    return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.create_connection((host, port), timeout=1):
        return True


def wait_until_serving(url: str, proc: subprocess.Popen | None = None, log_path: Path | None = None,
                       timeout: float = 120.0) -> float:
    """Poll ``url`` until it answers; fail with the log's tail if ``proc`` exits or time runs out."""
    return wait_for(lambda: answers(url), timeout, f"{url} to answer", poll=0.25, ignore=(OSError,), proc=proc,
                    log=log_path)


def wait_port(port: int, proc: subprocess.Popen | None = None, log: Path | None = None, timeout: float = 60.0) -> float:
    """Poll until something accepts connections on ``port``."""
    return wait_for(lambda: port_open(port), timeout, f"port {port} to open", poll=0.2, ignore=(OSError,),
                    proc=proc, log=log)
