"""Settings shared by every environment. Values that differ per deployment come from the environment."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = os.environ.get("SECRET_KEY", "")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "participants",
    "deliberation",
    "generation",
    "analysis",
    "legibility",
    "bots",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def database_from_env(default_url: str | None) -> dict:
    """The database from ``DATABASE_URL``. With ``DB_POOL_MAX_SIZE`` > 0 PostgreSQL goes through a psycopg
    connection pool of that size per process; ``config/asgi.py`` turns it on (40) for the ASGI server, where
    every HTTP request runs its sync code on a thread of its own and every socket's database work runs on the
    thread pool: without a pool each of them opens its own connection, and a burst of arrivals (a Prolific
    study going live) runs PostgreSQL out of connections ("too many clients") and answers with 500s. With the
    pool a burst waits for a free connection (at most ``DB_POOL_TIMEOUT`` seconds, default 30) and
    connections are checked before use, so a restarted database costs no failed request. Django's advice for
    ASGI is the same: no persistent connections, a pool instead. Workers and commands use one connection per
    process and keep failing fast on a bad database URL (a pool would wait its timeout first)."""
    url = os.environ.get("DATABASE_URL", default_url)
    if not url:
        return {}
    config = dj_database_url.parse(url, conn_max_age=int(os.environ.get("CONN_MAX_AGE", "0")))
    if config["ENGINE"].endswith("sqlite3"):
        # The demo runs sync views, async consumers and background threads on one file.
        config.setdefault("OPTIONS", {})["timeout"] = 30
    pool_size = int(os.environ.get("DB_POOL_MAX_SIZE", "0"))
    if config["ENGINE"].endswith("postgresql") and pool_size > 0:
        config["CONN_MAX_AGE"] = 0  # the pool keeps the connections; Django refuses both at once
        config["CONN_HEALTH_CHECKS"] = True
        config.setdefault("OPTIONS", {})["pool"] = {
            "min_size": min(2, pool_size), "max_size": pool_size,
            "timeout": float(os.environ.get("DB_POOL_TIMEOUT", "30")),
        }
    return config


DATABASES = {"default": database_from_env(None)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")


def redis_channel_layer(url: str) -> dict:
    """The Redis channel layer: ``CHANNEL_LAYER=pubsub`` (the default) or ``core``.

    pubsub (``channels_redis.pubsub``): each process holds one subscription connection, and Redis pushes it every
    message for the channels and groups its sockets listen to. core (``channels_redis.core``) keeps messages in
    Redis lists that each process pops one at a time, one round trip per message behind one lock per process:
    at 2,000 participants on two processes its receive queue fell seconds behind in bursts (benchmarks/load.py
    push_path: published -> received p99 5 s; docs/load.md). pubsub keeps nothing for a process that is not
    listening, which the snapshot protocol does not need: a lost push is repaired by the next ping."""
    # redis-py is pinned <8 (see requirements.txt); the explicit options also guard against
    # redis-py 8's 5 s socket_timeout and its 100-connection pool that raises instead of waiting.
    host = {"address": url, "socket_timeout": None, "max_connections": 5000}
    kind = os.environ.get("CHANNEL_LAYER", "pubsub")
    if kind == "pubsub":
        return {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": [host]}}
    if kind == "core":
        return {"BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [host], "capacity": int(os.environ.get("CHANNEL_CAPACITY", "1000")),
                           "expiry": 60}}
    raise ImproperlyConfigured(f"CHANNEL_LAYER must be pubsub or core, not {kind!r}")


CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)} if REDIS_URL else {
    "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
}

def redis_cache(url: str) -> dict:
    return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url, "KEY_PREFIX": "dlb"}


# Redis when there is one (shared by every process); the embedded demo is one process: local memory.
CACHES = {"default": redis_cache(REDIS_URL)} if REDIS_URL else {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "deliberation"}
}

# Join rate limit: new participants per client IP per window (0 = off). A returning participant
# (same PROLIFIC_PID or cookie) resumes without counting. Off by default here because bots, demos and
# load tests join hundreds from one address; production turns it on (30). Labs behind one address raise it.
JOIN_RATE_LIMIT = int(os.environ.get("JOIN_RATE_LIMIT", "0"))
JOIN_RATE_WINDOW_SECONDS = int(os.environ.get("JOIN_RATE_WINDOW_SECONDS", "60"))
# How many proxies in front of the app append to X-Forwarded-For. 0: the client IP is REMOTE_ADDR and
# the header is ignored (a client could write anything in it); 1 behind one nginx / load balancer.
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ROUTES = {"generation.tasks.*": {"queue": "generation"}}
CELERY_BEAT_SCHEDULE = {
    "sweep-deadlines": {"task": "deliberation.tasks.sweep_deadlines", "schedule": 2.0},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# Generation runs in a Celery worker on queue "generation". In the embedded demo (no Redis)
# the ASGI process runs it on a background thread instead: see deliberation/inprocess.py.
IN_PROCESS_WORKER = env_bool("IN_PROCESS_WORKER", not REDIS_URL)
# Calls up the layers (docs/architecture.md): where a lower app must run a higher one's function, the function
# is named here, never imported (Celery tasks are sent by name instead).
IN_PROCESS_GENERATE = "generation.services.candidates_generate"  # deliberation/inprocess.py
BEST_OF_N_SCORER = "analysis.reward.best_of_n.member_utilities"  # generation/services.py
CSV_QUERYSET_WRITER = "analysis.exports.write_queryset_csv"  # core/csv_export.py (the admin's CSV action)
ASGI_SERVE = "config.serve.run"  # deliberation/management/commands/demo.py (the ASGI server with the websocket limits)
# Hosts a study's OpenAI-compatible base URL may name (checked on the admin form and in the worker). The API key
# is read from the variable a study names, which must be GENERATION_API_KEY or GENERATION_API_KEY_<SUFFIX>.
GENERATION_ALLOWED_HOSTS = env_list("GENERATION_ALLOWED_HOSTS", "127.0.0.1,localhost")
GENERATION_SOFT_TIME_LIMIT = int(os.environ.get("GENERATION_SOFT_TIME_LIMIT", "600"))
# Tasks that come within this window share one batch (the generation worker runs --pool threads).
GENERATION_BATCH_WINDOW_MS = int(os.environ.get("GENERATION_BATCH_WINDOW_MS", "50"))
# A task whose backend is down retries with capped backoff for about this long; the group waits meanwhile.
GENERATION_MAX_ATTEMPTS = int(os.environ.get("GENERATION_MAX_ATTEMPTS", "60"))
# A generation task is queued after commit; if the broker was unreachable then (Redis restarting), the sweeper
# queues it again once the group has waited this long with no worker having started it (the task is idempotent).
GENERATION_REQUEUE_SECONDS = int(os.environ.get("GENERATION_REQUEUE_SECONDS", "60"))
# Redis redelivers a task whose worker died after this many seconds (acks_late); keep it above the
# longest generation, since a redelivery of a running task only wastes compute (the task is idempotent).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", str(GENERATION_SOFT_TIME_LIMIT + 120))),
}

# A participant counts as connected while one of their websockets has pinged within this window.
PRESENCE_TIMEOUT_SECONDS = 45
# Where pings are recorded (participants/presence.py): Redis when there is one, so a ping writes no PostgreSQL
# row; without it (the demo) the socket's Presence row. Redis calls give up after this many seconds.
PRESENCE_REDIS_URL = os.environ.get("PRESENCE_REDIS_URL", REDIS_URL)
PRESENCE_REDIS_TIMEOUT_SECONDS = float(os.environ.get("PRESENCE_REDIS_TIMEOUT_SECONDS", "0.5"))
# A ping whose version is the one its socket last sent, with no push in flight, is answered without a database
# read (the ping is recorded in Redis alone) unless the socket's last read was this many seconds ago: a push the
# channel layer lost is then noticed within this time plus a ping interval (deliberation/consumers.py).
PING_VERIFY_SECONDS = float(os.environ.get("PING_VERIFY_SECONDS", "45"))
# A socket writes a member's draft at most once per this many seconds; the newest draft in between is written
# when the interval is over (deliberation/consumers.py), and before a submission or a disconnect.
DRAFT_WRITE_INTERVAL_SECONDS = float(os.environ.get("DRAFT_WRITE_INTERVAL_SECONDS", "2"))

# Websocket limits (docs/security.md). A frame larger than this is refused by the ASGI server before it is read
# (close code 1009): config/serve.py passes it to every server it starts; daphne's runserver (development settings)
# reads the DAPHNE_* names below.
# deliberation/messages.py MAX_MESSAGE_BYTES (the same 64 KiB) stays as the consumer's second line.
WEBSOCKET_MAX_MESSAGE_BYTES = int(os.environ.get("WEBSOCKET_MAX_MESSAGE_BYTES", str(64 * 1024)))
DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = WEBSOCKET_MAX_MESSAGE_BYTES
# autobahn applies the message limit to what the server sends as well (snapshots), so it stays at daphne's 1 MiB.
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = max(WEBSOCKET_MAX_MESSAGE_BYTES, 1024 * 1024)
# permessage-deflate (RFC 7692) for the websockets, off unless WEBSOCKET_COMPRESSION=1: a snapshot is a few KB
# of JSON, and each socket's zlib contexts cost memory: at 2,000 participants on two processes the ASGI workers'
# memory per connection went from 111 to 63 KB without it, CPU within the runs' noise (docs/load.md, stop 27).
# config/serve.py passes it to uvicorn; granian and daphne do not compress.
WEBSOCKET_COMPRESSION = env_bool("WEBSOCKET_COMPRESSION", False)
# Per socket: (burst, tokens per second) for each kind of message; over it the message gets a `rate_limited`
# error reply and the socket stays open. The page sends a draft at most every ~1 s and a ping every 15 s.
WEBSOCKET_RATE_LIMITS = {
    "draft": (20, 2.0),
    "sync": (5, 0.5),
    "ping": (5, 0.5),
    "submit": (10, 1.0),  # submit_opinion, submit_critique, submit_ratings
}
# Open sockets per participant (tabs, devices); a new one beyond it closes the oldest (code 4409).
WEBSOCKET_MAX_SOCKETS_PER_PARTICIPANT = int(os.environ.get("WEBSOCKET_MAX_SOCKETS_PER_PARTICIPANT", "3"))
# Studies with bot takeover: a member away this long during an input phase is answered for by a bot.
BOT_TAKEOVER_GRACE_SECONDS = float(os.environ.get("BOT_TAKEOVER_GRACE_SECONDS", "30"))

REWARD_MODELS_DIR = Path(os.environ.get("REWARD_MODELS_DIR", BASE_DIR / "var" / "reward_models"))
# Retraining while a study runs (Study.reward_retrain_every): the fewest ratings worth training on, and how long a
# training may go without a heartbeat before another worker takes the study over (its worker is taken for dead).
REWARD_MIN_TRAINING_RATINGS = int(os.environ.get("REWARD_MIN_TRAINING_RATINGS", "20"))
REWARD_RETRAIN_STALE_SECONDS = int(os.environ.get("REWARD_RETRAIN_STALE_SECONDS", str(15 * 60)))
# Fine-tuned generator versions (manage.py finetune_generator): one folder per version, and the fewest endorsed
# statements worth fine-tuning on.
GENERATOR_MODELS_DIR = Path(os.environ.get("GENERATOR_MODELS_DIR", BASE_DIR / "var" / "generator_models"))
GENERATOR_MIN_TRAINING_EXAMPLES = int(os.environ.get("GENERATOR_MIN_TRAINING_EXAMPLES", "20"))
# Legibility studies: one directory per trained verifier (see legibility/verifier.py save/load).
LEGIBILITY_VERIFIER_DIR = Path(os.environ.get("LEGIBILITY_VERIFIER_DIR", BASE_DIR / "var" / "verifiers"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"  # admin, monitor and analyst pages; participants and judges see their study's language
# The languages a study can be run in (Study.language, LegibilityStudy.language). Adding one: docs/experimenter.md.
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# plotly.js for the analyst reports comes from the installed plotly package (no CDN): /static/plotly/plotly.min.js
STATICFILES_DIRS = [BASE_DIR / "static",
                    ("plotly", Path(importlib.util.find_spec("plotly").origin).parent / "package_data")]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # channels-redis reports dropped messages (channel full) only at INFO.
        "channels_redis": {"level": "INFO"},
        "daphne": {"level": "WARNING"},
    },
}
