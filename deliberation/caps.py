"""Quotas and caps: a study closes itself when it has the participants or groups it asked for.

Caps live on the study (``max_participants``, ``max_groups``) and on each arm (same names). Closing goes through
``Study.is_active`` (off) with ``Study.closed_reason`` set (for the experimenter), so the join page tells
newcomers the study is full (``participants.services.check_joinable``); ticking "is active" again in admin
clears the reason.
"""
from __future__ import annotations

from django.db.models import Count

from participants.models import Participant

from .models import Group, Study, StudyArm


def arm_has_cap(arm: StudyArm) -> bool:
    """Whether the arm caps its groups or participants (an arm without caps never fills)."""
    return arm.max_groups is not None or arm.max_participants is not None


def arm_is_full(arm: StudyArm, *, groups: int, members: int, joining: int = 0) -> bool:
    """True when the arm takes no more groups: its group cap is reached, or this group's members would pass
    its participant cap."""
    return ((arm.max_groups is not None and groups >= arm.max_groups)
            or (arm.max_participants is not None and members + joining > arm.max_participants))


def consented_count(study: Study) -> int:
    """People who consented (every status but ``joined``), simulated ones included: they take seats too."""
    return Participant.objects.filter(study=study).exclude(status=Participant.Status.JOINED).count()


def study_full_reason(study: Study, arms: list[StudyArm] | None = None) -> str:
    """Which cap is reached ('' when none is). Only caps that are set cost a query: the lobby asks this on
    every group formed. ``arms``: the study's arms, when the caller has them."""
    if study.max_participants is not None and consented_count(study) >= study.max_participants:
        return f"participant cap of {study.max_participants} reached"
    if study.max_groups is not None and Group.objects.filter(study=study).count() >= study.max_groups:
        return f"group cap of {study.max_groups} reached"
    arms = list(StudyArm.objects.filter(study=study)) if arms is None else arms
    if arms and all(arm_has_cap(arm) for arm in arms):  # every arm full closes the study
        usage = {row["arm"]: row for row in Group.objects.filter(study=study).values("arm")
                 .annotate(groups=Count("id", distinct=True), members=Count("members", distinct=True))}
        if all(arm_is_full(arm, groups=usage.get(arm.pk, {}).get("groups", 0),
                           members=usage.get(arm.pk, {}).get("members", 0), joining=study.min_group_size)
               for arm in arms):
            return "every arm reached its cap"
    return ""


def study_close_if_full(*, study: Study, arms: list[StudyArm] | None = None) -> bool:
    """Close the study (is_active off, closed_reason) if a cap is reached; True if it closed now. The caller holds
    the study's row lock (the lobby matcher, or the join)."""
    if not study.is_active:
        return False
    reason = study_full_reason(study, arms)
    if not reason:
        return False
    closed = f"Closed itself: {reason}."
    Study.objects.filter(pk=study.pk).update(is_active=False, closed_reason=closed)
    study.is_active, study.closed_reason = False, closed
    return True
