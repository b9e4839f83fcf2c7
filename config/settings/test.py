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
