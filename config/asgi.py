"""ASGI entry point: HTTP through Django, websockets through Channels.

Run with ``python -m config.serve -b HOST -p PORT`` (uvicorn with the project's websocket limits; several
processes share the Redis channel layer).
"""
import gc
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


def warm_up() -> None:
    """Do now what the first page after a start would: import the URLconf (and with it the admin and every
    app's views) and compile the participants' templates. Done lazily, that holds the GIL for about a second in
    the middle of a running study, while every websocket of the process waits (the first group to finish, the
    first completion page)."""
    from django.template.loader import get_template
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (the import is the point)
    for name in ("participants/study.html", "participants/complete.html", "participants/consent.html",
                 "participants/message.html"):
        get_template(name)


warm_up()
# What the start loaded (Django, the apps, the URLconf, the templates) lives as long as the process: out of the
# garbage collector's sight, so a full collection walks only what the sockets made since. A full collection holds
# the GIL, and every socket of the process waits for it (benchmarks/load.py reports them: asgi_gc).
gc.freeze()
# Young collections every 50,000 allocations instead of 700: a push's and a message's objects mostly die before
# one, so fewer of them reach the old generation, whose growth by a quarter is what starts a full collection;
# each young collection stays a few milliseconds. (docs/load.md, stop 27: full collections and their pauses.)
gc.set_threshold(50_000, 20, 10)
