"""``/healthz``: a liveness and readiness check for load balancers and container health checks.

200 with ``{"database": "ok", "cache": "ok"}`` when PostgreSQL answers a query and the shared cache (Redis in
production) answers a round trip; 503 naming what failed otherwise. Cheap (two round trips), never cached.
"""
from __future__ import annotations

import logging

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

logger = logging.getLogger(__name__)


@never_cache
def healthz(request):
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure is "not ready", reported by name
        logger.warning("health check: database: %s", exc)
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        cache.set("healthz", "1", 10)
        checks["cache"] = "ok" if cache.get("healthz") == "1" else "error: value not read back"
    except Exception as exc:  # noqa: BLE001
        logger.warning("health check: cache: %s", exc)
        checks["cache"] = f"error: {type(exc).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)
