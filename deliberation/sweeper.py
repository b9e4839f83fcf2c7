"""Deadlines are stored, not slept on: this sweep advances whatever is due.

Run every couple of seconds by Celery beat (``deliberation.tasks.sweep_deadlines``), by
``manage.py run_sweeper`` or by the demo's in-process loop. Idempotent and safe to run
from several processes at once: every change happens under row locks.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import flow
from participants.models import Participant
from participants.services import presence_sweep

from .lobby import lobby_match
from .models import Group
from .services import group_apply, log_event
from .takeover import takeover_sweep

logger = logging.getLogger(__name__)


@dataclass
class SweepReport:
    groups_advanced: int = 0
    groups_formed: int = 0
    presences_expired_groups: int = 0
    generation_requeued: int = 0
    members_taken_over: int = 0
    bot_submissions: int = 0


def sweep(now: datetime | None = None) -> SweepReport:
    now = now or timezone.now()
    report = SweepReport()
    stale_groups = presence_sweep(now=now)
    report.presences_expired_groups = len(stale_groups)
    # Before the deadlines: a dropped member's bot answers in time, and the group waits for it.
    takeover = _safely(takeover_sweep, now=now)
    if takeover is not None:
        report.members_taken_over, report.bot_submissions = takeover.taken_over, takeover.submissions
    for group_id in stale_groups:
        _safely(group_apply, group_id=group_id, event=flow.PresenceChanged(), now=now)
    due = Group.objects.filter(phase__in=[p.value for p in flow.INPUT_PHASES], deadline__lte=now)
    for group_id in due.values_list("id", flat=True):
        transition = _safely(group_apply, group_id=group_id, event=flow.Tick(), now=now)
        report.groups_advanced += bool(transition and transition.changed)
    for group_id in stalled_generation(now):
        report.generation_requeued += bool(_safely(generation_requeue, group_id=group_id, now=now))
    study_ids = set(Participant.objects.filter(status=Participant.Status.LOBBY).values_list("study_id", flat=True))
    for study_id in study_ids:
        formed = _safely(lobby_match, study_id=study_id, now=now) or []
        report.groups_formed += len(formed)
    return report


def stalled_generation(now: datetime) -> list[int]:
    """Groups waiting for candidates for GENERATION_REQUEUE_SECONDS whose task no worker has started (nor was it
    queued again within that time): the task was most likely never queued (broker down at commit)."""
    horizon = now - timedelta(seconds=settings.GENERATION_REQUEUE_SECONDS)
    stalled = []
    for group in Group.objects.filter(phase__in=list(flow.GENERATION_PHASES), phase_started_at__lte=horizon):
        events = group.events.filter(created_at__gte=group.phase_started_at)
        if events.filter(kind="generation_started").exists():
            continue  # a worker has it; a worker that dies gets it redelivered (acks_late)
        if events.filter(kind="generation_requeued", created_at__gt=horizon).exists():
            continue
        stalled.append(group.pk)
    return stalled


def generation_requeue(*, group_id: int, now: datetime) -> bool:
    from .dispatch import enqueue_generation

    with transaction.atomic():
        group = Group.objects.select_for_update().get(pk=group_id)
        round_ = flow.GENERATION_PHASES.get(flow.Phase(group.phase))
        if round_ is None:
            return False
        log_event(group, "generation_requeued", None, round=round_)
        enqueue_generation(group_id=group.pk, round=round_)
    return True


def _safely(fn, **kwargs):
    """One broken group must not stop the sweep for every other group."""
    try:
        return fn(**kwargs)
    except Exception:
        logger.exception("sweep step %s(%s) failed", fn.__name__, kwargs)
        return None
