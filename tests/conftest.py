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


@pytest.fixture(scope="session", autouse=True)
def _close_stray_connections_before_teardown(request):
    """Consumer threads and killed server processes can leave sessions on the test database,
    which would stop pytest-django from dropping it at the end."""
    if not _django_configured():
        yield
        return
    request.getfixturevalue("django_db_setup")  # so this teardown runs before the database is dropped
    blocker = request.getfixturevalue("django_db_blocker")
    yield
    from django.db import connection

    try:
        with blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    except Exception:
        pass


def _django_configured() -> bool:
    try:
        from django.conf import settings

        return settings.configured and bool(settings.DATABASES)
    except Exception:
        return False
