"""Bot takeover: when a member drops out mid-group, a server-side simulated participant answers for them.

Only for studies with ``Study.bot_takeover``. The sweeper (Celery beat every 2 s, ``run_sweeper`` or the
demo's in-process loop) calls ``takeover_sweep``. A member counts as dropped once they have had no open
websocket for ``BOT_TAKEOVER_GRACE_SECONDS`` during an input phase while another member is still connected
(a group whose people have all gone is left to its deadlines); they are then marked dropped (status
``dropped``, ``taken_over_at``, the study's "dropped" completion code) and from then on the bot submits each of
their remaining answers through the same services a browser uses: the opinion from their draft if it is
usable (else one written from the question, as ``run_bots`` does), ratings and a ranking by word-overlap
similarity to that opinion, and a critique of the winner. Every step is recorded as a group event
(``taken_over_by_bot``, ``bot_submitted``) and every answer it stores carries ``by_bot`` (also an opinion built
from the member's own draft: the draft stays theirs, the submission is the bot's), so analyses and exports leave
it out by default (``AnswerQuerySet.human``); the person themselves can no longer write. While taken over,
the member counts as present in the flow (``services.group_state``), so the group waits the few seconds until
the bot has answered instead of moving on without them; the phase deadline still bounds the wait.

``decide`` is the pure rule; the rest applies it.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import flow
from core.flow import Phase
from participants.models import Participant
from participants.standins import QuestionOpinions, critique_text, rate

from . import realtime
from .models import Candidate, Draft, Group, Opinion
from .selectors import connected_participant_ids, submitted_participant_ids
from .services import (
    SubmissionError,
    critique_submit,
    derive_seed,
    log_event,
    opinion_submit,
    ratings_submit,
)

logger = logging.getLogger(__name__)
INPUT_PHASE_VALUES = tuple(p.value for p in flow.INPUT_PHASES)


# --- the rule (pure) ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Seat:
    participant_id: int
    connected: bool
    submitted: bool  # in the current phase
    taken_over: bool
    away_since: datetime  # when their last websocket went away (or the group formed, if they never came)


@dataclass(frozen=True)
class Decision:
    take_over: tuple[int, ...] = ()  # members to mark dropped and hand to the bot now
    act_for: tuple[int, ...] = ()  # members (taken over now or earlier) the bot answers for in this phase


def decide(phase: str, seats: list[Seat], now: datetime, *, enabled: bool, grace_seconds: float) -> Decision:
    if not enabled or phase not in INPUT_PHASE_VALUES:
        return Decision()
    # Bots stand in for the people still there; a group whose humans have all gone is left to its deadlines.
    humans_present = any(s.connected and not s.taken_over for s in seats)
    take_over = tuple(s.participant_id for s in seats if humans_present and not s.taken_over and not s.connected
                      and not s.submitted and (now - s.away_since).total_seconds() >= grace_seconds)
    act_for = tuple(s.participant_id for s in seats
                    if (s.taken_over or s.participant_id in take_over) and not s.submitted)
    return Decision(take_over, act_for)


# --- applying it --------------------------------------------------------------------------------
@dataclass
class TakeoverReport:
    taken_over: int = 0
    submissions: int = 0


def takeover_sweep(now: datetime | None = None) -> TakeoverReport:
    """Check every group of a bot-takeover study that is waiting for input."""
    now = now or timezone.now()
    report = TakeoverReport()
    group_ids = Group.objects.filter(study__bot_takeover=True, phase__in=INPUT_PHASE_VALUES) \
        .values_list("id", flat=True)
    for group_id in group_ids:
        try:
            taken, submitted = takeover_group(group_id=group_id, now=now)
        except Exception:  # one broken group must not stop the others
            logger.exception("bot takeover for group %s failed", group_id)
            continue
        report.taken_over += taken
        report.submissions += submitted
    return report


def takeover_group(*, group_id: int, now: datetime | None = None) -> tuple[int, int]:
    """Returns (members taken over now, answers the bot submitted)."""
    now = now or timezone.now()
    group = Group.objects.select_related("study", "question").get(pk=group_id)
    members = list(Participant.objects.filter(group=group).order_by("position"))
    connected = connected_participant_ids([m.pk for m in members], now)
    submitted = submitted_participant_ids(group)
    seats = [Seat(m.pk, m.pk in connected, m.pk in submitted, m.taken_over_at is not None,
                  m.last_seen_at or group.created_at)
             for m in members if m.status == Participant.Status.IN_GROUP or m.taken_over_at is not None]
    decision = decide(group.phase, seats, now, enabled=group.study.bot_takeover,
                      grace_seconds=settings.BOT_TAKEOVER_GRACE_SECONDS)
    taken = sum(_mark_taken_over(group, pid, now) for pid in decision.take_over)
    done = 0
    for pid in decision.act_for:
        participant = Participant.objects.get(pk=pid)
        if participant.taken_over_at is None:
            continue  # came back between the decision and the lock
        done += _answer_for(group, participant)
    return taken, done


def _mark_taken_over(group: Group, participant_id: int, now: datetime) -> bool:
    with transaction.atomic():
        participant = Participant.objects.select_for_update().get(pk=participant_id)
        if participant.status != Participant.Status.IN_GROUP or participant.taken_over_at is not None:
            return False
        if participant.pk in connected_participant_ids([participant.pk], now):
            return False  # reconnected meanwhile
        participant.status = Participant.Status.DROPPED
        participant.taken_over_at = now
        participant.finished_at = now
        participant.completion_code = group.study.completion_code(Participant.Status.DROPPED.value)
        participant.save(update_fields=["status", "taken_over_at", "finished_at", "completion_code"])
        log_event(group, "taken_over_by_bot", participant, phase=group.phase,
                  away_seconds=round((now - (participant.last_seen_at or group.created_at)).total_seconds(), 1))
        realtime.push_after_commit(groups=[group.pk], participants=[participant.pk])
    return True


def _rng(group: Group, participant: Participant, phase: str) -> random.Random:
    return random.Random(derive_seed(group.study.generation_seed, group.pk, participant.pk, phase, "takeover"))


def _opinion_of(group: Group, participant: Participant) -> str:
    opinion = Opinion.objects.filter(group=group, participant=participant).first()
    return opinion.text if opinion else group.question.text


def _answer_for(group: Group, participant: Participant) -> int:
    """Submit this member's answer for the group's current phase; 1 if one was stored."""
    phase = Phase(group.phase)
    rng = _rng(group, participant, phase.value)
    limit = group.study.max_text_chars
    source = "policy"
    try:
        if phase is Phase.OPINION:
            draft = Draft.objects.filter(group=group, participant=participant, phase=phase.value).first()
            text = str((draft.payload or {}).get("text", "")).strip() if draft and isinstance(draft.payload, dict) \
                else ""
            source = "draft"
            if len(text.split()) < 3:
                text, source = QuestionOpinions().opinion(group.question.text, rng), "question"
            try:
                result = opinion_submit(participant=participant, text=text[:limit], by_bot=True)
            except SubmissionError:  # a draft the service refuses: write one instead
                source = "question"
                result = opinion_submit(participant=participant, by_bot=True,
                                        text=QuestionOpinions().opinion(group.question.text, rng)[:limit])
        elif phase is Phase.CRITIQUE:
            winner = group.winner_round1.text if group.winner_round1_id else ""
            result = critique_submit(participant=participant, by_bot=True,
                                     text=critique_text(winner, _opinion_of(group, participant), rng)[:limit])
        else:
            round_ = flow.round_of(phase)
            candidates = [{"id": c.pk, "text": c.text}
                          for c in Candidate.objects.filter(group=group, round=round_, shown=True).order_by("index")]
            if not candidates:
                return 0
            ratings, ranking = rate(candidates, _opinion_of(group, participant), "similarity", rng)
            result = ratings_submit(participant=participant, round=round_, ranking=ranking, by_bot=True,
                                    ratings={r["candidate_id"]: {"agreement": r["agreement"], "quality": r["quality"]}
                                             for r in ratings})
    except SubmissionError as exc:
        if exc.code not in ("wrong_phase", "already_submitted"):  # the phase moved on, or stored: nothing to do
            logger.warning("bot for participant %s in group %s: %s", participant.pk, group.pk, exc.message)
        return 0
    if not result.created:
        return 0
    log_event(group, "bot_submitted", participant, phase=phase.value, source=source)
    return 1
