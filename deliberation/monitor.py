"""The experimenter's live monitor: groups by phase, who is connected, deadlines, unstick a group."""
from __future__ import annotations

from collections import Counter

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from participants.models import Participant

from .models import Group, Study
from .pause import study_pause, study_resume
from .services import connected_participant_ids, group_force_advance, submitted_participant_ids


def study_monitor_state(study: Study) -> dict:
    now = timezone.now()
    groups = list(Group.objects.filter(study=study).select_related("question", "arm").order_by("-id")[:200])
    members = list(Participant.objects.filter(group__in=groups)
                   .values_list("id", "group_id", "position", "status", "taken_over_at"))
    connected = connected_participant_ids([m[0] for m in members], now)
    rows = []
    for group in groups:
        submitted = submitted_participant_ids(group)
        group_members = [m for m in members if m[1] == group.pk]
        rows.append({
            "id": group.pk, "phase": group.phase, "question": group.question.text[:120],
            "arm": group.arm.name if group.arm_id else "", "condition": group.condition,
            "deadline": group.deadline.isoformat() if group.deadline else None,
            "seconds_left": int((group.deadline - now).total_seconds()) if group.deadline else None,
            "paused_seconds_left": (int(group.paused_seconds_left) if group.paused_seconds_left is not None
                                    else None),
            "members": [{"position": pos, "connected": pid in connected, "submitted": pid in submitted,
                         "status": status, "bot": taken is not None}
                        for pid, _, pos, status, taken in sorted(group_members, key=lambda m: m[2])],
            "generation_error": group.generation_status, "outcome": group.outcome,
        })
    statuses = Counter(Participant.objects.filter(study=study).values_list("status", flat=True))
    arms = Counter(g.arm.name if g.arm_id else "" for g in groups)
    return {
        "study": {"id": study.pk, "slug": study.slug, "title": study.title, "is_active": study.is_active,
                  "closed_reason": study.closed_reason,
                  "paused_at": study.paused_at.isoformat() if study.paused_at else None},
        "groups_by_arm": {arm.name: arms.get(arm.name, 0) for arm in study.arms.order_by("id")},
        "participants_by_status": dict(statuses),
        "groups_by_phase": dict(Counter(g.phase for g in groups)),
        "groups": rows,
        "server_time": now.isoformat(),
    }


@staff_member_required
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "monitor/index.html", {"studies": Study.objects.order_by("-created_at")})


@staff_member_required
def study_monitor(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    join_url = request.build_absolute_uri(f"/s/{study.slug}/")
    return render(request, "monitor/study.html", {"study": study, "state": study_monitor_state(study),
                                                  "join_url": join_url})


@staff_member_required
def study_state(request: HttpRequest, study_id: int) -> JsonResponse:
    return JsonResponse(study_monitor_state(get_object_or_404(Study, pk=study_id)))


@staff_member_required
@permission_required("deliberation.change_group", raise_exception=True)
@require_POST
def group_advance(request: HttpRequest, group_id: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=group_id)
    transition = group_force_advance(group_id=group.pk, user=request.user.get_username())
    messages.info(request, f"Group {group.pk}: {transition.reason or 'no change'} "
                           f"(now {transition.state.phase.value}).")
    return redirect("monitor_study", study_id=group.study_id)


@staff_member_required
@permission_required("deliberation.change_study", raise_exception=True)
@require_POST
def study_pause_view(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    if study.paused_at is not None:
        messages.info(request, "The study was paused already.")
    else:
        frozen = study_pause(study_id=study.pk, user=request.user.get_username())
        messages.info(request, f"Paused: new joins are refused and {frozen} running group(s) are frozen.")
    return redirect("monitor_study", study_id=study.pk)


@staff_member_required
@permission_required("deliberation.change_study", raise_exception=True)
@require_POST
def study_resume_view(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    if study.paused_at is None:
        messages.info(request, "The study is not paused.")
    else:
        resumed = study_resume(study_id=study.pk, user=request.user.get_username())
        messages.info(request, f"Resumed: {resumed} group(s) continue with the time they had left.")
    return redirect("monitor_study", study_id=study.pk)
