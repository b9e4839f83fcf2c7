"""The ceiling for benchmarks/load.py: a minimal Channels broadcast consumer on the same channels-redis layer.

No database, no snapshot: a socket at ``/ws/raw/<group>/`` joins channel group ``raw_<group>`` and forwards
every ``bench.push`` event as JSON. Whatever latency and loss this shows is the stack's floor (daphne +
channels-redis + the machine); the real consumer can only add to it.

    daphne -b 127.0.0.1 -p 8001 benchmarks.raw_consumer:application      # REDIS_URL from the environment

Own settings (``settings.configure``), own routing; the layer config is the project's
(``config.settings.base.redis_channel_layer``: capacity, timeouts, pool size).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import django  # noqa: E402
from django.conf import settings  # noqa: E402


def configure(redis_url: str | None = None) -> None:
    """Minimal settings: only the channel layer (idempotent)."""
    if settings.configured:
        return
    # Only the layer settings come from the project: importing its config package (which loads the Celery app)
    # needs a settings module or the development marker (config/environment.py); these settings are our own.
    os.environ.setdefault("DELIBERATION_DEV", "1")
    from config.settings.base import redis_channel_layer

    settings.configure(
        DEBUG=False, SECRET_KEY="raw-consumer-benchmark", ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        INSTALLED_APPS=["channels"], DATABASES={}, USE_TZ=True,
        CHANNEL_LAYERS={"default": redis_channel_layer(redis_url or os.environ["REDIS_URL"])},
        LOGGING={"version": 1, "disable_existing_loggers": False,
                 "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
                 "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
                 "root": {"handlers": ["console"], "level": "WARNING"},
                 "loggers": {"channels_redis": {"level": "INFO"}}},
    )
    django.setup()


def group_name(group: int) -> str:
    return f"raw_{group}"


configure()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class BroadcastConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.group = group_name(int(self.scope["url_route"]["kwargs"]["group"]))
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def bench_push(self, event: dict) -> None:
        await self.send(text_data=json.dumps({"type": "push", "seq": event["seq"], "sent_at": event["sent_at"]}))


application = ProtocolTypeRouter({
    "websocket": URLRouter([path("ws/raw/<int:group>/", BroadcastConsumer.as_asgi())]),
})
