"""Where generation work is sent: a Celery worker on queue ``generation``, after commit.

Generation sits above deliberation (docs/architecture.md), so the task is sent by name
(``generation.tasks.generate_candidates``), never imported. In the embedded demo
(``IN_PROCESS_WORKER``) the ASGI process runs it on a background thread instead: the in-process
worker (deliberation/inprocess.py) registers its hand-off here when it starts. Never inline in a request.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from celery import current_app
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

GENERATE_CANDIDATES_TASK = "generation.tasks.generate_candidates"
_in_process_handoff: Callable[..., None] | None = None


def register_in_process_worker(handoff: Callable[..., None]) -> None:
    """Called by the in-process worker when it starts: ``handoff(group_id=, round=)`` queues a job for it."""
    global _in_process_handoff
    _in_process_handoff = handoff


def enqueue_generation(*, group_id: int, round: int) -> None:
    def send() -> None:
        if settings.IN_PROCESS_WORKER:
            if _in_process_handoff is None:
                logger.error("in-process worker not running; group %s round %s waits for a monitor retry",
                             group_id, round)
                return
            _in_process_handoff(group_id=group_id, round=round)
        else:
            try:
                current_app.send_task(GENERATE_CANDIDATES_TASK, kwargs={"group_id": group_id, "round": round},
                                      queue="generation")
            except Exception:  # the broker is down; what committed stays committed and the sweeper queues it again
                logger.exception("could not queue generation for group %s round %s", group_id, round)

    transaction.on_commit(send)
