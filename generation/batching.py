"""Coalesce generation requests that arrive within a short window into one backend call.

A generation worker runs several tasks at once (``--pool threads``); each task calls
``coalesced_generate``. The first caller opens a window (``GENERATION_BATCH_WINDOW_MS``);
requests from other tasks that arrive before it closes join the same batch, which the
embedded backend runs as one left-padded batch. Every caller gets exactly its own results,
in order. Backends are grouped by identity (same name and options), never mixed.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .backends.base import GenerationRequest, GenerationResult


@dataclass
class _Batch:
    requests: list[GenerationRequest] = field(default_factory=list)
    results: list[GenerationResult] | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    closed: bool = False


class Coalescer:
    def __init__(self, backend, window_seconds: float = 0.05, max_batch: int = 64):
        self.backend = backend
        self.window_seconds = window_seconds
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._open: _Batch | None = None
        self.calls = 0  # backend calls made (for tests and benchmarks)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        with self._lock:
            batch = self._open
            leader = batch is None or batch.closed or len(batch.requests) + len(requests) > self.max_batch
            if leader:
                batch = self._open = _Batch()
            offset = len(batch.requests)
            batch.requests.extend(requests)
        if leader:
            time.sleep(self.window_seconds)  # let other tasks' requests join
            with self._lock:
                batch.closed = True
                if self._open is batch:
                    self._open = None
            try:
                self.calls += 1
                batch.results = self.backend.generate(batch.requests)
            except BaseException as exc:  # every waiter must learn about the failure
                batch.error = exc
            finally:
                batch.done.set()
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.results[offset:offset + len(requests)]


_coalescers: dict[tuple, Coalescer] = {}
_registry_lock = threading.Lock()


def coalescer_for(backend_name: str, options: dict, factory, window_seconds: float) -> Coalescer:
    """One coalescer per (backend, options) in this process."""
    key = (backend_name, tuple(sorted((k, str(v)) for k, v in options.items())))
    with _registry_lock:
        if key not in _coalescers:
            _coalescers[key] = Coalescer(factory(), window_seconds=window_seconds)
        return _coalescers[key]
