"""OpenAI-compatible HTTP backend: vLLM, llama.cpp's server, TGI, or any ``/v1/chat/completions``.

Async HTTP with a bounded number of requests in flight, retries with exponential backoff
and jitter on 429, 5xx, timeouts and refused connections. When the server stays down the
call raises ``GenerationError``; the Celery task retries later and the group keeps waiting.
The API key is read from the environment variable whose *name* the study stores.
"""
from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx

from .base import GenerationError, GenerationRequest, GenerationResult

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAICompatibleBackend:
    name = "openai"

    def __init__(self, base_url: str, model: str = "", api_key_env: str = "", concurrency: int = 4,
                 timeout: float = 120.0, max_attempts: int = 5, backoff_seconds: float = 1.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        if not base_url:
            raise GenerationError("The OpenAI-compatible backend needs a base URL (e.g. http://gpu-host:8000/v1).")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = max(1, int(concurrency))
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_seconds = backoff_seconds
        self.transport = transport

    @property
    def model_id(self) -> str:
        return f"{self.model or 'default'} @ {self.base_url}"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise GenerationError(f"Environment variable {self.api_key_env} (the API key) is not set.")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Blocking entry point for workers; runs the requests concurrently on a private event loop."""
        return asyncio.run(self.agenerate(requests))

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        headers = self._headers()
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        semaphore = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=self.timeout,
                                     limits=limits, transport=self.transport) as client:
            async def one(request: GenerationRequest) -> GenerationResult:
                async with semaphore:
                    return await self._complete(client, request)

            return list(await asyncio.gather(*(one(r) for r in requests)))

    def payload(self, request: GenerationRequest) -> tuple[dict[str, Any], str]:
        """The request body, and the dropped prefill (if the template had one)."""
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        # A trailing assistant message is a prefill; the chat API has no portable way to continue it.
        prefill = messages.pop()["content"] if messages and messages[-1]["role"] == "assistant" else ""
        body: dict[str, Any] = {"messages": messages, "max_tokens": request.max_new_tokens,
                                "temperature": request.temperature, "top_p": request.top_p,
                                "seed": request.seed, "n": 1}
        if self.model:
            body["model"] = self.model
        if request.stop:
            body["stop"] = list(request.stop)
        return body, prefill

    async def _complete(self, client: httpx.AsyncClient, request: GenerationRequest) -> GenerationResult:
        body, prefill = self.payload(request)
        last_error = ""
        for attempt in range(1, self.max_attempts + 1):
            started = time.perf_counter()
            try:
                response = await client.post("/chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return self._result(response.json(), request, started, attempt, prefill)
                last_error = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in RETRY_STATUS:
                    raise GenerationError(f"{self.base_url} refused the request: {last_error}")
            if attempt < self.max_attempts:
                delay = self.backoff_seconds * 2 ** (attempt - 1)
                await asyncio.sleep(delay * (0.5 + random.random()))
        raise GenerationError(f"{self.base_url} unavailable after {self.max_attempts} attempts: {last_error}")

    def _result(self, data: dict, request: GenerationRequest, started: float, attempt: int,
                prefill: str) -> GenerationResult:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise GenerationError(f"Unexpected response from {self.base_url}: {str(data)[:200]}") from None
        usage = data.get("usage") or {}
        return GenerationResult(
            text=text.strip(), model_id=str(data.get("model") or self.model_id), seed=request.seed,
            latency_ms=(time.perf_counter() - started) * 1000,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            extra={"backend": self.name, "base_url": self.base_url, "finish_reason": choice.get("finish_reason"),
                   "attempts": attempt, "prefill_dropped": prefill or None},
        )
