"""Demo and development settings: run on a bare laptop with the embedded defaults.

With DATABASE_URL / REDIS_URL set they use PostgreSQL / Redis; without them SQLite, the
in-memory channel layer and an in-process worker.
"""
import os

from .base import *  # noqa: F403
from .base import BASE_DIR, INSTALLED_APPS, database_from_env

# daphne first only makes `manage.py runserver` serve ASGI (websockets) during development; production and the
# demo serve through config.serve.
INSTALLED_APPS = ["daphne", *INSTALLED_APPS]

DEBUG = env_bool("DEBUG", True)  # noqa: F405
SECRET_KEY = os.environ.get("SECRET_KEY") or "insecure-local-demo-key-do-not-use-in-production"
DATABASES = {"default": database_from_env(f"sqlite:///{BASE_DIR / 'var' / 'demo.sqlite3'}")}
