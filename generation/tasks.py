"""Celery tasks on queue ``generation``: thin; the work is in generation.services.

``acks_late`` + ``reject_on_worker_lost``: a worker killed mid-task leaves the message on the
queue and another worker runs it again; the service is idempotent per (group, round).
"""
from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError

from .services import GenerationFailed, candidates_generate


@shared_task(
    bind=True,
    name="generation.tasks.generate_candidates",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.GENERATION_SOFT_TIME_LIMIT,
    time_limit=settings.GENERATION_SOFT_TIME_LIMIT + 60,
    max_retries=settings.GENERATION_MAX_ATTEMPTS,
    ignore_result=True,
)
def generate_candidates(self, *, group_id: int, round: int) -> int:
    try:
        return candidates_generate(group_id=group_id, round=round, claim=self.request.id)
    # OperationalError/InterfaceError: the database went away (restarting); without a retry the task would be
    # acked as failed and the group would wait forever. The service is idempotent per (group, round).
    except (GenerationFailed, SoftTimeLimitExceeded, OperationalError, InterfaceError) as exc:
        raise self.retry(exc=exc, countdown=min(60, 5 * 2 ** self.request.retries))
