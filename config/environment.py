"""Which settings a process runs with: named explicitly, or the development settings when asked for.

``manage.py``, ``config/asgi.py`` and ``config/celery_app.py`` call ``require_settings_module()`` before Django
loads. A process started without ``DJANGO_SETTINGS_MODULE`` used to fall back to ``config.settings.local``
silently: a production host that lost the variable (a unit file, a cron line, a shell) would run with DEBUG
on, a published development SECRET_KEY and a SQLite file. Now it refuses to start, with the reason, unless the
development marker ``DELIBERATION_DEV=1`` is set (``scripts/demo``, ``scripts/test``, the demo's end-to-end test
and development benchmarks set it). Production sets the module explicitly (``docker/Dockerfile``).
"""
from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

SETTINGS_VARIABLE = "DJANGO_SETTINGS_MODULE"
DEV_MARKER = "DELIBERATION_DEV"
DEV_SETTINGS = "config.settings.local"

MISSING = (f"{SETTINGS_VARIABLE} is not set, and this toolkit does not guess its settings. Set it explicitly "
           f"(config.settings.production on a server), or set {DEV_MARKER}=1 to run on the development "
           f"settings ({DEV_SETTINGS}: DEBUG on, an insecure key, SQLite unless DATABASE_URL is set), as "
           f"scripts/demo and scripts/test do.")


class SettingsModuleMissing(ImproperlyConfigured):
    """No explicit settings module and no development marker."""


def dev_marker_set(environ=os.environ) -> bool:
    return environ.get(DEV_MARKER, "").strip().lower() in ("1", "true", "yes")


def require_settings_module(environ=os.environ) -> str:
    """The settings module this process will use; with only the development marker set, the development
    settings are put into ``environ`` (so subprocesses, e.g. the demo's Celery worker, get the same)."""
    module = environ.get(SETTINGS_VARIABLE, "").strip()
    if module:
        return module
    if dev_marker_set(environ):
        environ[SETTINGS_VARIABLE] = DEV_SETTINGS
        return DEV_SETTINGS
    raise SettingsModuleMissing(MISSING)
