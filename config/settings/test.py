"""Test settings: the machine's real PostgreSQL and Redis (scripts/test starts them if down)."""
import os

from .base import *  # noqa: F403
from .base import database_from_env, redis_channel_layer

SECRET_KEY = "test-secret-key"
DEBUG = False
DATABASES = {"default": database_from_env("postgres://postgres@127.0.0.1:5432/deliberation")}
# Two test runs on one machine (e.g. two checkouts) must not share the test database.
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DB_NAME", "test_deliberation")}
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9")
# pytest-xdist (scripts/test --fast runs two workers): pytest-django gives each worker its own test database
# (NAME_gw0, ...); each also gets its own Redis database, since every test flushes its channel layer's.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw") and _worker[2:].isdigit():
    _base, _, _db = REDIS_URL.rpartition("/")
    REDIS_URL = f"{_base}/{(int(_db or 0) + 1 + int(_worker[2:])) % 16}"
CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
PRESENCE_REDIS_URL = REDIS_URL
CELERY_BROKER_URL = REDIS_URL
IN_PROCESS_WORKER = False
# Unit tests call services directly; tests that need a real worker start one (tests/conftest.py).
CELERY_TASK_ALWAYS_EAGER = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
