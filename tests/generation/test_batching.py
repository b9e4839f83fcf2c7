"""Requests from concurrent tasks within the window share one backend call; each caller gets its own results."""
from __future__ import annotations

import threading

import pytest

from generation.backends import GenerationRequest, get_backend
from generation.backends.base import ChatMessage
from generation.batching import Coalescer


class CountingBackend:
    name = "counting"
    model_id = "counting"

    def __init__(self, fail=False):
        self.batches = []
        self.fail = fail

    def generate(self, requests):
        self.batches.append(len(requests))
        if self.fail:
            raise RuntimeError("server down")
        return [get_backend("extractive").generate([r])[0] for r in requests]


def request(seed, text="- We should plant trees in every street.\n- Trees cost money to maintain."):
    return GenerationRequest(messages=(ChatMessage("user", f"Question: trees?\n{text}"),), seed=seed)


def run_concurrently(coalescer, groups):
    results = [None] * len(groups)
    barrier = threading.Barrier(len(groups))

    def work(i):
        barrier.wait()
        results[i] = coalescer.generate(groups[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(groups))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_concurrent_callers_share_one_batch_and_get_their_own_results():
    backend = CountingBackend()
    coalescer = Coalescer(backend, window_seconds=0.3)
    groups = [[request(10 * g + i) for i in range(3)] for g in range(4)]
    results = run_concurrently(coalescer, groups)
    assert backend.batches == [12]
    for group, out in zip(groups, results):
        assert [r.seed for r in out] == [q.seed for q in group]


def test_batches_respect_max_size_and_failures_reach_every_caller():
    backend = CountingBackend()
    coalescer = Coalescer(backend, window_seconds=0.2, max_batch=5)
    run_concurrently(coalescer, [[request(i) for i in range(3)] for _ in range(4)])
    assert sum(backend.batches) == 12 and max(backend.batches) <= 5
    failing = Coalescer(CountingBackend(fail=True), window_seconds=0.2)
    errors = []

    def call():
        try:
            failing.generate([request(1)])
        except RuntimeError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == ["server down"] * 3


@pytest.mark.model
def test_embedded_backend_runs_a_coalesced_batch_as_one_padded_batch():
    coalescer = Coalescer(get_backend("embedded"), window_seconds=0.5)
    groups = [[GenerationRequest(messages=request(s).messages, seed=s, max_new_tokens=12) for s in (1, 2)],
              [GenerationRequest(messages=request(s, "- Short one.").messages, seed=s, max_new_tokens=12)
               for s in (3,)]]
    results = run_concurrently(coalescer, groups)
    assert coalescer.calls == 1
    assert [r.extra["batch_size"] for r in results[0] + results[1]] == [3, 3, 3]
    assert all(r.text for r in results[0] + results[1])
