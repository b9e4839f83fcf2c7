"""Reads: the snapshot a participant's page renders from. One path for consumers, views and tests.

A snapshot holds everything the page needs, so a client that reconnects, reloads or
opens a second tab shows exactly where the participant is. It never contains another
member's texts or identity: members appear as numbered seats.
"""
from __future__ import annotations

import random
import threading
import time
from datetime import datetime
from typing import Any

from django.db.models import JSONField, OuterRef, Subquery
from django.utils import timezone

from participants.models import Participant

from . import flow
from .flow import Phase
from .models import Candidate, Critique, Draft, Group, Opinion, Rating
from .services import connected_participant_ids, derive_seed, submitted_participant_ids

PROLIFIC_COMPLETE_URL = "https://app.prolific.com/submissions/complete?cc={code}"


def completion_url(participant: Participant) -> str | None:
    code = participant.completion_code
    if participant.study.prolific_redirect and code:
        return PROLIFIC_COMPLETE_URL.format(code=code)
    return None


def snapshot_version(participant: Participant, group: Group | None) -> str:
    return f"{participant.status}:{group.pk if group else 0}:{group.version if group else 0}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _candidate_order(candidates: list[Candidate], participant: Participant) -> list[Candidate]:
    """A fixed, per-participant random order, so position bias averages out across members."""
    rng = random.Random(derive_seed(participant.pk, "order", *(c.pk for c in candidates)))
    ordered = list(candidates)
    rng.shuffle(ordered)
    return ordered


def participant_snapshot(participant: Participant, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    # One query for the participant, their group (with its question and winners) and their own texts: a push
    # makes every member's socket read this, so fewer round trips here is what carries a busy study.
    mine = {"group_id": OuterRef("group_id"), "participant_id": OuterRef("pk")}
    participant = (Participant.objects.select_related("study", "group", "group__question", "group__winner_round1",
                                                      "group__winner_round2")
                   .annotate(my_opinion=Subquery(Opinion.objects.filter(**mine).values("text")[:1]),
                             my_critique=Subquery(Critique.objects.filter(**mine).values("text")[:1]),
                             my_draft=Subquery(Draft.objects.filter(**mine, phase=OuterRef("group__phase"))
                                               .values("payload")[:1], output_field=JSONField()))
                   .get(pk=participant.pk))
    study = participant.study
    group = participant.group
    snapshot: dict[str, Any] = {
        "type": "snapshot",
        "version": snapshot_version(participant, group),
        "server_time": _iso(now),
        "study": {"title": study.title, "max_text_chars": study.max_text_chars},
        "participant": {
            "status": participant.status,
            "position": participant.position,
            "completion_code": participant.completion_code if participant.is_finished else None,
            "completion_url": completion_url(participant) if participant.is_finished else None,
        },
        "lobby": None,
        "group": None,
    }
    if participant.status == Participant.Status.LOBBY:
        waiting = Participant.objects.filter(study=study, status=Participant.Status.LOBBY).count()
        snapshot["lobby"] = {"waiting": waiting, "min_group_size": study.min_group_size,
                             "max_group_size": study.max_group_size, "timeout_seconds": study.lobby_timeout_seconds,
                             "entered_at": _iso(participant.lobby_entered_at)}
    if group is not None:
        snapshot["group"] = _group_part(participant, group, now)
    return snapshot


# The part of a snapshot that every member of a group shares, kept per process for a moment: a push reaches
# all members of a group at once, and each member's socket reads its snapshot; without this every one of
# them would read the same members, presence, submissions, candidates and winner again. Keyed by the group's
# version, which every committed change bumps, so a change is never served from before it. Presence (who is
# connected) is not versioned: the entry lives SHARED_TTL_SECONDS, and a push is what refreshes it anyway.
SHARED_TTL_SECONDS = 1.0
_SHARED_MAX = 4096
_shared: dict[tuple[int, int], tuple[float, dict[str, Any]]] = {}
_shared_lock = threading.Lock()


def _shared_group_part(group: Group, now: datetime) -> dict[str, Any]:
    key, clock = (group.pk, group.version), time.monotonic()
    with _shared_lock:
        hit = _shared.get(key)
    if hit is not None and clock - hit[0] <= SHARED_TTL_SECONDS:
        return hit[1]
    phase = Phase(group.phase)
    members = list(group.members.order_by("position").values_list("id", "position"))
    shared: dict[str, Any] = {
        "members": members,
        "connected": connected_participant_ids([pid for pid, _ in members], now),
        "submitted": submitted_participant_ids(group),
        "question": group.question.text,
        "candidates": [],
        "winner": None,
    }
    if phase in (Phase.RATING, Phase.FINAL_RATING):
        shared["candidates"] = list(Candidate.objects.filter(group=group, round=flow.round_of(phase), shown=True)
                                    .order_by("index").only("id", "text"))
    winner = group.winner_round2 if phase is Phase.DONE and group.winner_round2_id else group.winner_round1
    if phase in (Phase.CRITIQUE, Phase.REVISING, Phase.FINAL_RATING, Phase.DONE) and winner is not None:
        shared["winner"] = {"id": winner.pk, "text": winner.text, "round": winner.round}
    with _shared_lock:
        if len(_shared) >= _SHARED_MAX:
            _shared.clear()
        _shared[key] = (clock, shared)
    return shared


def _group_part(participant: Participant, group: Group, now: datetime) -> dict[str, Any]:
    phase = Phase(group.phase)
    shared = _shared_group_part(group, now)
    connected, submitted = shared["connected"], shared["submitted"]
    part: dict[str, Any] = {
        "id": group.pk,
        "phase": phase.value,
        "round": flow.round_of(phase),
        "deadline": _iso(group.deadline),
        "phase_started_at": _iso(group.phase_started_at),  # server clock; lets load tests time push delivery
        "seconds_left": max(0, int((group.deadline - now).total_seconds())) if group.deadline else None,
        "question": shared["question"],
        "members": [{"position": pos, "connected": pid in connected, "submitted": pid in submitted,
                     "is_me": pid == participant.pk} for pid, pos in shared["members"]],
        "generation_error": bool(group.generation_status),
        "submitted": participant.pk in submitted,
        "draft": None,
        "candidates": [],
        "winner": shared["winner"],
        "my_opinion": None,
        "my_ratings": None,
        "my_critique": None,
        "outcome": group.outcome or None,
    }
    part["my_opinion"] = _own(participant, "my_opinion", Opinion, group)
    part["draft"] = _own(participant, "my_draft", Draft, group, phase=group.phase, column="payload")
    if phase in (Phase.RATING, Phase.FINAL_RATING):
        round_ = flow.round_of(phase)
        part["candidates"] = [{"id": c.pk, "text": c.text} for c in _candidate_order(shared["candidates"], participant)]
        mine = Rating.objects.filter(group=group, participant=participant, round=round_) \
            .values_list("candidate_id", "agreement", "quality", "rank")
        if mine:
            part["my_ratings"] = {str(cid): {"agreement": a, "quality": q, "rank": r} for cid, a, q, r in mine}
    part["my_critique"] = _own(participant, "my_critique", Critique, group)
    return part


def _own(participant: Participant, annotation: str, model, group: Group, column: str = "text", **filters):
    """The participant's own row's value: annotated by ``participant_snapshot``'s query, else read."""
    if hasattr(participant, annotation):
        return getattr(participant, annotation)
    return model.objects.filter(group=group, participant=participant, **filters).values_list(column, flat=True).first()
