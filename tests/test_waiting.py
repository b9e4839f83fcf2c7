"""tests/waiting.py: the one wait-for loop of the tests and benchmarks."""
from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .waiting import WaitFailed, wait_for, wait_port, wait_until_serving


def test_returns_once_true_and_keeps_polling_through_ignored_errors():
    calls = []

    def ready():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("still down")
        return True

    assert wait_for(ready, 5, "a server", poll=0.01, ignore=(ConnectionError,)) < 5
    assert len(calls) == 3


def test_an_error_not_ignored_propagates():
    with pytest.raises(ValueError):
        wait_for(lambda: int("x"), 1, "a number", poll=0.01)


def test_timeout_says_what_it_waited_for_and_why(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("listening failed: port taken\n")
    with pytest.raises(WaitFailed) as failed:
        wait_for(lambda: False, 0.05, lambda: "group 7 to finish", poll=0.01, explain=lambda: "phase rating",
                 log=log)
    assert "group 7 to finish" in str(failed.value) and "phase rating" in str(failed.value)
    assert "port taken" in str(failed.value)


def test_a_process_that_exits_fails_at_once_with_its_log(tmp_path):
    log = tmp_path / "daphne.log"
    log.write_text("Traceback: boom\n")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    with pytest.raises(WaitFailed) as failed:
        wait_port(1, proc, log, timeout=30)
    assert "exited with 3" in str(failed.value) and "boom" in str(failed.value)


def test_waits_for_a_real_http_server():
    class Ok(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    port = server.server_address[1]
    threading.Timer(0.3, server.serve_forever).start()  # not serving yet when the wait starts
    try:
        assert wait_until_serving(f"http://127.0.0.1:{port}/", timeout=10) >= 0
        assert wait_port(port, timeout=10) >= 0
    finally:
        server.shutdown()
        server.server_close()
