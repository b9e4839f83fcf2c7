"""The production application (``config.asgi``) with every SQL statement it executes counted and its garbage
collections timed, for the load benchmark: ``python -m config.serve ... benchmarks.counted_asgi:application``.
Each server worker process imports it, so each counts its own statements and collections and publishes them to
Redis (``benchmarks/stack.py``)."""
from __future__ import annotations

import os

from benchmarks.stack import install_gc_recorder, install_push_tracer, install_query_counter, install_stall_probe

install_query_counter(os.environ["REDIS_URL"], "asgi")
install_gc_recorder(os.environ["REDIS_URL"], "asgi")
install_stall_probe(os.environ["REDIS_URL"], "asgi")

from config.asgi import application  # noqa: E402 (after the counter, so the first connection is counted too)

install_push_tracer(os.environ["REDIS_URL"], "asgi")  # after the application: it wraps the consumer's methods

__all__ = ["application"]
