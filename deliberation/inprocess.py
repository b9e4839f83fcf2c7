"""The embedded demo's worker: generation and the deadline sweeper inside the ASGI process.

Only for ``IN_PROCESS_WORKER`` (no Redis: SQLite and the in-memory channel layer, whose
pushes must come from the server's own event loop). Production and tests use Celery.
Started lazily by the first websocket connection. Generation sits above deliberation
(docs/architecture.md): the function that generates is named by ``settings.IN_PROCESS_GENERATE``.
"""
from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils.module_loading import import_string

from . import dispatch

logger = logging.getLogger(__name__)

_loop: asyncio.AbstractEventLoop | None = None
_queue: asyncio.Queue | None = None
SWEEP_INTERVAL_SECONDS = 1.0


def ensure_started() -> None:
    global _loop, _queue
    if _loop is not None:
        return
    _loop = asyncio.get_running_loop()
    _queue = asyncio.Queue()
    _loop.create_task(_sweep_forever())
    _loop.create_task(_generate_forever())
    dispatch.register_in_process_worker(submit_generation)
    logger.info("in-process worker started (demo mode)")


def submit_generation(*, group_id: int, round: int) -> None:
    """Thread-safe: called after commit from whichever thread ran the service."""
    if _loop is None:
        logger.error("in-process worker not running; group %s round %s waits for a monitor retry", group_id, round)
        return
    _loop.call_soon_threadsafe(_queue.put_nowait, (group_id, round))


async def _sweep_forever() -> None:
    from .sweeper import sweep

    while True:
        try:
            await sync_to_async(sweep)()
        except Exception:
            logger.exception("sweep failed")
        await asyncio.sleep(SWEEP_INTERVAL_SECONDS)


async def _generate_forever() -> None:
    candidates_generate = import_string(settings.IN_PROCESS_GENERATE)
    while True:
        group_id, round_ = await _queue.get()
        for attempt in range(3):
            try:
                # thread_sensitive=False: the model must not block the thread that serves the ORM.
                await sync_to_async(candidates_generate, thread_sensitive=False)(group_id=group_id, round=round_)
                break
            except Exception:
                logger.exception("generation for group %s round %s failed (attempt %s)", group_id, round_, attempt + 1)
                await asyncio.sleep(2 * (attempt + 1))
