"""Where generation work is sent: a Celery worker on queue ``generation``, after commit.

In the embedded demo (``IN_PROCESS_WORKER``) the ASGI process runs it on a background
thread instead (deliberation/inprocess.py). Never inline in a request.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue_generation(*, group_id: int, round: int) -> None:
    def send() -> None:
        if settings.IN_PROCESS_WORKER:
            from deliberation.inprocess import submit_generation

            submit_generation(group_id=group_id, round=round)
        else:
            from .tasks import generate_candidates

            try:
                generate_candidates.apply_async(kwargs={"group_id": group_id, "round": round}, queue="generation")
            except Exception:  # the broker is down; what committed stays committed and the sweeper queues it again
                logger.exception("could not queue generation for group %s round %s", group_id, round)

    transaction.on_commit(send)
