"""ASGI entry point: HTTP through Django, websockets through Channels.

Run with ``python -m config.serve -b HOST -p PORT`` (daphne with the project's websocket limits; several
processes share the Redis channel layer).
"""
import os

from django.core.asgi import get_asgi_application

from config.environment import require_settings_module

require_settings_module()  # explicit DJANGO_SETTINGS_MODULE, or DELIBERATION_DEV=1 for the development settings
# The ASGI server runs database work on many threads at once: bound its PostgreSQL connections with a pool
# (see config/settings/base.py database_from_env; DB_POOL_MAX_SIZE=0 turns it off).
os.environ.setdefault("DB_POOL_MAX_SIZE", "40")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from deliberation.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
})
