"""Deadlines are stored, not slept on: this sweep advances whatever is due.

Run every couple of seconds by Celery beat (``deliberation.tasks.sweep_deadlines``), by
``manage.py run_sweeper`` or by the demo's in-process loop. Idempotent and safe to run
from several processes at once: every change happens under row locks.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from participants.models import Participant
from participants.services import lobby_match, presence_sweep

from . import flow
from .models import Group
from .services import group_apply

logger = logging.getLogger(__name__)


@dataclass
class SweepReport:
    groups_advanced: int = 0
    groups_formed: int = 0
    presences_expired_groups: int = 0


def sweep(now: datetime | None = None) -> SweepReport:
    now = now or timezone.now()
    report = SweepReport()
    stale_groups = presence_sweep(now=now)
    report.presences_expired_groups = len(stale_groups)
    for group_id in stale_groups:
        _safely(group_apply, group_id=group_id, event=flow.PresenceChanged(), now=now)
    due = Group.objects.filter(phase__in=[p.value for p in flow.INPUT_PHASES], deadline__lte=now)
    for group_id in due.values_list("id", flat=True):
        transition = _safely(group_apply, group_id=group_id, event=flow.Tick(), now=now)
        report.groups_advanced += bool(transition and transition.changed)
    study_ids = set(Participant.objects.filter(status=Participant.Status.LOBBY).values_list("study_id", flat=True))
    for study_id in study_ids:
        formed = _safely(lobby_match, study_id=study_id, now=now) or []
        report.groups_formed += len(formed)
    return report


def _safely(fn, **kwargs):
    """One broken group must not stop the sweep for every other group."""
    try:
        return fn(**kwargs)
    except Exception:
        logger.exception("sweep step %s(%s) failed", fn.__name__, kwargs)
        return None
