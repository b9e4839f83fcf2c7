"""Production settings: every required value comes from the environment, or start-up fails."""
import os

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import database_from_env, env_bool, env_list, redis_channel_layer

REQUIRED = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS")
missing = [name for name in REQUIRED if not os.environ.get(name)]
if missing:
    raise ImproperlyConfigured(
        "Production settings need these environment variables: " + ", ".join(missing)
    )
if env_bool("DEBUG", False):
    raise ImproperlyConfigured("DEBUG must be off in production settings.")

SECRET_KEY = os.environ["SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
DATABASES = {"default": database_from_env(None)}
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("CONN_MAX_AGE", "60"))
REDIS_URL = os.environ["REDIS_URL"]
CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
IN_PROCESS_WORKER = False
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
