"""Production settings: every required value comes from the environment, or start-up fails.

``manage.py check --deploy`` passes with these settings (tests/test_security.py runs it). The site is
assumed to sit behind a TLS-terminating proxy (docker/nginx.conf or a load balancer) that sets
``X-Forwarded-Proto``; ``HTTPS=false`` (or the older ``SECURE_COOKIES=false``) turns the HTTPS-only
settings off for a plain-HTTP trial on localhost. See docs/deployment.md.
"""
import os

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import database_from_env, env_bool, env_list, redis_cache, redis_channel_layer

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
if "pool" not in DATABASES["default"].get("OPTIONS", {}):  # DB_POOL_MAX_SIZE=0: persistent connections
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("CONN_MAX_AGE", "60"))
REDIS_URL = os.environ["REDIS_URL"]
CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
# Shared by every ASGI process (the join rate limit counts per IP across all of them).
CACHES = {"default": redis_cache(REDIS_URL)}
PRESENCE_REDIS_URL = os.environ.get("PRESENCE_REDIS_URL", REDIS_URL)
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
IN_PROCESS_WORKER = False
# New participants per client IP per JOIN_RATE_WINDOW_SECONDS (see base.py); TRUSTED_PROXY_COUNT=1 behind nginx.
JOIN_RATE_LIMIT = int(os.environ.get("JOIN_RATE_LIMIT", "30"))

# --- HTTPS (behind a proxy that terminates TLS) ---------------------------------------------
HTTPS = env_bool("HTTPS", env_bool("SECURE_COOKIES", True))
# Trust X-Forwarded-Proto only because the proxy in front sets it (and strips a client's own).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
# Load balancers' health checks often come over plain HTTP: paths listed here are not redirected.
SECURE_REDIRECT_EXEMPT = env_list("SECURE_REDIRECT_EXEMPT")
# HSTS: browsers refuse plain HTTP for this host for a year once they have seen the header.
SECURE_HSTS_SECONDS = int(os.environ.get("HSTS_SECONDS", "31536000")) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# A join link arriving from Prolific is a cross-site top-level GET: "Lax" keeps the cookies working.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
