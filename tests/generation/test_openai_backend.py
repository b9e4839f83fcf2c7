"""The OpenAI-compatible backend: against a real llama.cpp server (llama-cpp-python[server] serving the
SmolLM2 GGUF on 127.0.0.1), and against a small local HTTP server that misbehaves on purpose."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from generation.backends import GenerationError, GenerationRequest, get_backend
from generation.backends.base import ChatMessage
from generation.backends.embedded import find_gguf
from generation.prompts import CONSENSUS, render_consensus

from ..e2e.stack import free_port
from ..waiting import wait_until_serving

MESSAGES = render_consensus(CONSENSUS, "Should our city make public transport free?", [
    "Free transport would help low-income families and cut traffic.",
    "The money is better spent on more frequent buses.",
    "Free for students and pensioners only."])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    import llama_cpp  # noqa: F401  (scripts/build-llama-server installs it; scripts/test runs that first)
    folder, name = find_gguf()
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = open(log_path, "w")  # a pipe would fill with llama.cpp's start-up log and block the server
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(folder / name), "--host",
                             "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    wait_until_serving(base + "/models", proc, log_path, timeout=240)
    yield base
    log.close()
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.model
def test_real_llama_cpp_server_writes_statements_concurrently(llama_server):
    backend = get_backend("openai", base_url=llama_server, concurrency=2, timeout=300)
    requests = [GenerationRequest(messages=MESSAGES, seed=s, max_new_tokens=40, temperature=0.7) for s in (1, 2, 1)]
    results = backend.generate(requests)
    assert all(r.text for r in results)
    assert all(r.prompt_tokens > 0 and 0 < r.completion_tokens <= 40 for r in results)
    assert results[0].text == results[2].text  # the seed is honoured by the server
    assert results[0].extra["prefill_dropped"] == "We"  # the chat API cannot continue a prefill


class Flaky(BaseHTTPRequestHandler):
    """Answers 503, then 429, then a valid completion; records the Authorization header."""

    calls: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Flaky.calls.append({"auth": self.headers.get("Authorization"), "body": body})
        status = {1: 503, 2: 429}.get(len(Flaky.calls), 200)
        payload = {"error": "busy"} if status != 200 else {
            "model": "stub-model", "choices": [{"message": {"content": " We agree that basic food should be tax free for all. "}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3}}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_server():
    Flaky.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_retries_429_and_5xx_then_succeeds_and_sends_the_key_from_the_named_variable(flaky_server, monkeypatch):
    monkeypatch.setenv("STUDY_LLM_KEY", "sk-test-123")
    backend = get_backend("openai", base_url=flaky_server, model="m1", api_key_env="STUDY_LLM_KEY",
                          backoff_seconds=0.01)
    [result] = backend.generate([GenerationRequest(messages=(ChatMessage("user", "hi"),), seed=7, stop=("\n\n",))])
    assert result.text == "We agree that basic food should be tax free for all." and result.extra["attempts"] == 3 and result.model_id == "stub-model"
    assert [c["auth"] for c in Flaky.calls] == ["Bearer sk-test-123"] * 3
    body = Flaky.calls[-1]["body"]
    assert body["seed"] == 7 and body["model"] == "m1" and body["stop"] == ["\n\n"] and body["n"] == 1


def test_missing_key_variable_and_down_server_are_clear_errors(monkeypatch):
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    with pytest.raises(GenerationError, match="NOT_SET_KEY"):
        get_backend("openai", base_url="http://127.0.0.1:9/v1", api_key_env="NOT_SET_KEY").generate(
            [GenerationRequest(messages=(ChatMessage("user", "hi"),), seed=1)])
    down = get_backend("openai", base_url=f"http://127.0.0.1:{free_port()}/v1", max_attempts=3, backoff_seconds=0.01)
    with pytest.raises(GenerationError, match="unavailable after 3 attempts"):
        down.generate([GenerationRequest(messages=(ChatMessage("user", "hi"),), seed=1)])
    with pytest.raises(GenerationError, match="base URL"):
        get_backend("openai", base_url="")
