"""Shared fixtures. Tests run on the machine's real PostgreSQL and Redis (scripts/test starts them)."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _flush_channel_layer_between_tests():
    """Each test starts with an empty Redis database for the channel layer."""
    import redis
    from django.conf import settings

    if not settings.configured:  # pure tests run without Django (-p no:django)
        yield
        return
    from channels.layers import channel_layers

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    # Each async test has its own event loop; a layer built on an earlier loop holds locks bound to it.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
    client.close()
