"""Demo and development settings: run on a bare laptop with the embedded defaults.

With DATABASE_URL / REDIS_URL set they use PostgreSQL / Redis; without them SQLite, the
in-memory channel layer and an in-process worker.
"""
import os

from .base import *  # noqa: F403
from .base import BASE_DIR, database_from_env

DEBUG = env_bool("DEBUG", True)  # noqa: F405
SECRET_KEY = os.environ.get("SECRET_KEY") or "insecure-local-demo-key-do-not-use-in-production"
DATABASES = {"default": database_from_env(f"sqlite:///{BASE_DIR / 'var' / 'demo.sqlite3'}")}
