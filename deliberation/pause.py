"""Pause and resume a running study (the monitor's buttons).

Paused (``Study.paused_at``): the join page refuses newcomers with a clear message, the lobby forms no groups, and
every running group's deadline is frozen: the time it had left goes to ``Group.paused_seconds_left`` and the
deadline is cleared, so the sweeper times nothing out and members' pages show "paused". A group whose phase
changes during the pause (everyone answered, candidates arrived) is frozen at once with its new phase's full time
(``services._apply``). Resuming sets every frozen deadline to now + the time it had left. Each group gets a
``paused`` and a ``resumed`` event (GroupEvent).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from core.flow import Phase

from .models import Group, Study
from .services import _touch, group_freeze, log_event


def study_pause(*, study_id: int, user: str = "", now: datetime | None = None) -> int:
    """Pause the study; returns how many groups were frozen (0 if it was paused already)."""
    now = now or timezone.now()
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)
        if study.paused_at is not None:
            return 0
        Study.objects.filter(pk=study.pk).update(paused_at=now)
        frozen = 0
        for group in Group.objects.select_for_update().filter(study=study).exclude(phase=Phase.DONE).order_by("id"):
            group_freeze(group, now)
            log_event(group, "paused", user=user, phase=group.phase, seconds_left=group.paused_seconds_left)
            _touch(group, deadline=group.deadline, paused_seconds_left=group.paused_seconds_left)
            frozen += 1
    return frozen


def study_resume(*, study_id: int, user: str = "", now: datetime | None = None) -> int:
    """Resume the study; every frozen group gets the time it had left. Returns how many groups resumed."""
    now = now or timezone.now()
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)
        if study.paused_at is None:
            return 0
        paused_for = (now - study.paused_at).total_seconds()
        Study.objects.filter(pk=study.pk).update(paused_at=None)
        resumed = 0
        for group in Group.objects.select_for_update().filter(study=study).exclude(phase=Phase.DONE).order_by("id"):
            left = group.paused_seconds_left
            deadline = now + timedelta(seconds=left) if left is not None else group.deadline
            log_event(group, "resumed", user=user, phase=group.phase, seconds_left=left,
                      paused_seconds=round(paused_for, 3))
            _touch(group, deadline=deadline, paused_seconds_left=None)
            resumed += 1
    return resumed
