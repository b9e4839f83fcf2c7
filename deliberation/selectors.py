"""Reads: the snapshot a participant's page renders from. One path for consumers, views and tests.

A snapshot holds everything the page needs, so a client that reconnects, reloads or
opens a second tab shows exactly where the participant is. It never contains another
member's texts or identity: members appear as numbered seats.
"""
from __future__ import annotations

import random
from datetime import datetime
from typing import Any

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
    participant = Participant.objects.select_related("study", "group").get(pk=participant.pk)
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


def _group_part(participant: Participant, group: Group, now: datetime) -> dict[str, Any]:
    phase = Phase(group.phase)
    members = list(group.members.order_by("position").values_list("id", "position"))
    connected = connected_participant_ids([pid for pid, _ in members], now)
    submitted = submitted_participant_ids(group)
    part: dict[str, Any] = {
        "id": group.pk,
        "phase": phase.value,
        "round": flow.round_of(phase),
        "deadline": _iso(group.deadline),
        "phase_started_at": _iso(group.phase_started_at),  # server clock; lets load tests time push delivery
        "seconds_left": max(0, int((group.deadline - now).total_seconds())) if group.deadline else None,
        "question": group.question.text,
        "members": [{"position": pos, "connected": pid in connected, "submitted": pid in submitted,
                     "is_me": pid == participant.pk} for pid, pos in members],
        "generation_error": bool(group.generation_status),
        "submitted": participant.pk in submitted,
        "draft": None,
        "candidates": [],
        "winner": None,
        "my_opinion": None,
        "my_ratings": None,
        "my_critique": None,
        "outcome": group.outcome or None,
    }
    opinion = Opinion.objects.filter(group=group, participant=participant).first()
    part["my_opinion"] = opinion.text if opinion else None
    draft = Draft.objects.filter(group=group, participant=participant, phase=group.phase).first()
    part["draft"] = draft.payload if draft else None
    if phase in (Phase.RATING, Phase.FINAL_RATING):
        round_ = flow.round_of(phase)
        candidates = list(Candidate.objects.filter(group=group, round=round_, shown=True).order_by("index"))
        part["candidates"] = [{"id": c.pk, "text": c.text} for c in _candidate_order(candidates, participant)]
        mine = Rating.objects.filter(group=group, participant=participant, round=round_)
        if mine:
            part["my_ratings"] = {str(r.candidate_id): {"agreement": r.agreement, "quality": r.quality, "rank": r.rank}
                                  for r in mine}
    winner = group.winner_round2 if phase is Phase.DONE and group.winner_round2_id else group.winner_round1
    if phase in (Phase.CRITIQUE, Phase.REVISING, Phase.FINAL_RATING, Phase.DONE) and winner is not None:
        part["winner"] = {"id": winner.pk, "text": winner.text, "round": winner.round}
    critique = Critique.objects.filter(group=group, participant=participant).first()
    part["my_critique"] = critique.text if critique else None
    return part
