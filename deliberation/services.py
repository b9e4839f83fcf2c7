"""Writes for deliberation groups: transitions, submissions, drafts, winners.

Every change runs in one transaction under a row lock on the group, writes an event row,
bumps ``Group.version`` and pushes after commit (``realtime.push_after_commit``). The flow
rules themselves live in the pure ``core.flow`` module.
"""
from __future__ import annotations

import json
import logging
import random
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any

from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import Case, Count, Q, Value, When
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy, ngettext_lazy, pgettext_lazy

from core import flow
from core.blocks import block_rank, weighted_block_choice
from core.errors import SubmissionError
from core.flow import Phase
from core.prepared import Prepared
from core.seeds import derive_seed
from core.social_choice import elect
from participants.models import Participant

from . import realtime
from .caps import arm_has_cap, arm_is_full, study_close_if_full
from .models import (
    Candidate,
    Critique,
    Draft,
    Group,
    GroupEvent,
    Opinion,
    Question,
    Rating,
    Study,
    StudyArm,
    SubmissionReceipt,
)
from .selectors import (  # noqa: F401 (connected_/submitted_participant_ids: deliberation.monitor imports them here)
    MembersRead,
    connected_participant_ids,
    group_members,
    group_shared_state,
    shared_state_formed,
    shared_state_from,
    submitted_participant_ids,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubmitResult:
    created: bool  # False: an identical resubmission, the stored value stands
    stored: Any = None  # what was stored, as a snapshot shows it (the cleaned text; the ratings by candidate id)
    replayed: bool = False  # the same ref was stored before: this is that submission's original result


# --- text hygiene ---------------------------------------------------------------------------
# Replies to the participant, translated lazily (the consumer renders them in the study's language). Whole
# sentences per kind of answer, so that each language can inflect "opinion", "critique" and "ratings" its own way.
NOT_TEXT = {"opinion": gettext_lazy("The opinion must be text."),
            "critique": gettext_lazy("The critique must be text.")}
TOO_LONG = {"opinion": gettext_lazy("Your opinion is {length} characters long; the limit is {limit}. Please shorten "
                                    "it — your text has been kept."),
            "critique": gettext_lazy("Your critique is {length} characters long; the limit is {limit}. Please "
                                     "shorten it — your text has been kept.")}
STORED_BY_TIMEOUT = {
    "opinion": gettext_lazy("The time for this step ran out, so what you had entered was stored as your opinion. "
                            "It cannot be changed now."),
    "critique": gettext_lazy("The time for this step ran out, so what you had entered was stored as your critique. "
                             "It cannot be changed now."),
    "ratings": gettext_lazy("The time for this step ran out, so what you had entered was stored as your ratings. "
                            "It cannot be changed now.")}
ALREADY_SUBMITTED = {
    "opinion": gettext_lazy("You already submitted your opinion; it is kept as you first sent it and cannot be "
                            "changed. What you sent now was not stored."),
    "critique": gettext_lazy("You already submitted your critique; it is kept as you first sent it and cannot be "
                             "changed. What you sent now was not stored."),
    "ratings": gettext_lazy("You already submitted your ratings; it is kept as you first sent it and cannot be "
                            "changed. What you sent now was not stored.")}
# The phase as the wrong_phase reply names it (in English the stored value, as before).
PHASE_NAMES = {
    Phase.OPINION: pgettext_lazy("group phase", "opinion"),
    Phase.GENERATING: pgettext_lazy("group phase", "generating"),
    Phase.RATING: pgettext_lazy("group phase", "rating"), Phase.CRITIQUE: pgettext_lazy("group phase", "critique"),
    Phase.REVISING: pgettext_lazy("group phase", "revising"),
    Phase.FINAL_RATING: pgettext_lazy("group phase", "final_rating"), Phase.DONE: pgettext_lazy("group phase", "done")}


def clean_text(text: str, *, max_chars: int, what: str, min_words: int = 1) -> str:
    """Normalise and validate participant text (``what``: opinion or critique). Stored raw (HTML is escaped on
    output)."""
    if not isinstance(text, str):
        raise SubmissionError("invalid", NOT_TEXT[what])
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    text = "\n".join(line.rstrip() for line in text.strip().splitlines())
    if len(text) > max_chars:
        raise SubmissionError("too_long", format_lazy(TOO_LONG[what], length=len(text), limit=max_chars))
    if len(text.split()) < min_words:
        raise SubmissionError("too_short", format_lazy(ngettext_lazy(
            "Please write at least {count} word.", "Please write at least {count} words.", min_words), count=min_words))
    return text


# --- group state ----------------------------------------------------------------------------
def _usable_draft(phase: Phase, payload: Any) -> bool:
    if not isinstance(payload, dict):
        return False
    if phase in (Phase.OPINION, Phase.CRITIQUE):
        return bool(str(payload.get("text", "")).strip())
    return bool(payload.get("ratings") or payload.get("ranking"))


def flow_state(group: Group, read: MembersRead, *, stored_by: int | None = None) -> flow.GroupState:
    """The pure flow's view of a locked group from ``selectors.group_members`` (``stored_by``: a member whose
    answer the caller stored after that read)."""
    phase = Phase(group.phase)
    # A member a bot has taken over (deliberation/takeover.py) counts as present: the group waits for the bot.
    members = tuple(
        flow.MemberView(r.id, connected=r.id in read.connected or r.taken_over,
                        submitted=r.submitted or r.id == stored_by,
                        has_draft=r.draft is not None and _usable_draft(phase, r.draft))
        for r in read.rows
    )
    return flow.GroupState(phase=phase, deadline=group.deadline, members=members)


def group_state(group: Group, now: datetime) -> flow.GroupState:
    return flow_state(group, group_members(group, now))


def group_freeze(group: Group, now: datetime) -> None:
    """Pause: move a locked group's deadline into ``paused_seconds_left`` (the caller saves the group)."""
    if group.deadline is not None:
        group.paused_seconds_left = max(0.0, (group.deadline - now).total_seconds())
        group.deadline = None


def group_event(group: Group, kind: str, participant: Participant | None = None, **payload: Any) -> GroupEvent:
    """An event row not written yet: a change of a group writes all of its events in one INSERT (``_apply``)."""
    return GroupEvent(group=group, kind=kind, participant=participant, payload=payload)


def log_event(group: Group, kind: str, participant: Participant | None = None, **payload: Any) -> None:
    group_event(group, kind, participant, **payload).save()


# A round's ratings as a transition counts them for the winner: (participant id, candidate id, rank, agreement).
RatingRow = tuple[int, int, int | None, int | None]


@dataclass
class _Writes:
    """What one change of a locked group writes, gathered while the flow's effects run so that it goes out in
    few statements: its events (one INSERT, in the order they happened), the group's changed fields (one UPDATE,
    with the version) and the members' statuses written by ``group_finish`` (for the pushed state)."""

    events: list[GroupEvent] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    statuses: dict[int, str] = field(default_factory=dict)
    finished: list[int] = field(default_factory=list)  # members the change finished: pushed after the group

    def write_events(self) -> None:
        if self.events:
            GroupEvent.objects.bulk_create(self.events)  # created_at set object by object: their order stays
            self.events = []


def _touch(group: Group, *, shared: dict | None = None, **fields: Any) -> None:
    """Persist changed fields and the bumped version in one statement, and push after commit the shared state
    (``shared``, built by the caller from its reads; else read here, still inside the transaction)."""
    for name, value in fields.items():
        setattr(group, name, value)
    group.version += 1
    group.save(update_fields=[*fields.keys(), "version"])
    if shared is None:
        shared = group_shared_state(group, cache=False)
    else:
        shared = {**shared, "version": group.version}
    realtime.push_after_commit(states=[shared])


def _apply(group: Group, event: flow.Event, now: datetime, *, read: MembersRead | None = None,
           stored_by: int | None = None, candidates: dict[int, Candidate] | None = None,
           ratings: list[RatingRow] | None = None, logged: tuple[GroupEvent, ...] = ()) -> flow.Transition:
    """Run the pure state machine on a locked group and carry out its effects. ``read``: the members as the
    caller read them under the lock (else read here); ``stored_by``: whose answer the caller just stored;
    ``candidates``: the round's shown candidates if the caller loaded them; ``ratings``: every rating of the
    round stored so far, its own included, if the caller read them (a submission that ends a rating phase:
    the winner is chosen from them); ``logged``: the caller's events, written with the transition's.

    The pushed state is built from these reads, with or without a phase change: the phase just entered has no
    answers yet (``flow._enter``), and what the effects change (winner, outcome, statuses, generation status)
    is known here. So a submission's statements under the lock are its reads, its insert, one INSERT of the
    events, one UPDATE of the group, and a finished group's one UPDATE of its members
    (tests/deliberation/test_lean_path.py counts them)."""
    read = read or group_members(group, now)
    state = flow_state(group, read, stored_by=stored_by)
    transition = flow.advance(state, event, now, group.flow_config)
    writes = _Writes(events=list(logged))
    if not transition.changed:
        submitted = read.submitted | ({stored_by} if stored_by is not None else set())
        shared = shared_state_from(group, read, submitted=submitted,
                                   candidates=None if candidates is None else list(candidates.values()))
        writes.write_events()
        _touch(group, shared=shared)
        return transition
    writes.events.append(group_event(group, "phase_changed", from_phase=group.phase,
                                     to_phase=transition.state.phase.value, reason=transition.reason))
    group.phase = transition.state.phase.value
    group.deadline = transition.state.deadline
    group.phase_started_at = now
    group.paused_seconds_left = None
    if group.study.paused_at is not None:  # a paused study's groups keep their time (deliberation/pause.py)
        group_freeze(group, now)
    for effect in transition.effects:
        _carry_out(group, effect, state, now, read=read, writes=writes, candidates=candidates, ratings=ratings)
    in_group = {r.id for r in read.rows if r.status == Participant.Status.IN_GROUP}  # group_finish's filter
    shared = shared_state_from(group, read, submitted={m.participant_id for m in transition.state.members
                                                       if m.submitted},
                               statuses={pid: s for pid, s in writes.statuses.items() if pid in in_group})
    writes.write_events()
    _touch(group, shared=shared, phase=group.phase, deadline=group.deadline, phase_started_at=now,
           paused_seconds_left=group.paused_seconds_left, generation_status=group.generation_status,
           **writes.fields)
    if writes.finished:  # their own sockets: after the group's push, which shows them finished
        realtime.push_after_commit(participants=writes.finished, covered_by=(group.pk, group.version))
    return transition


def _carry_out(group: Group, effect: flow.Effect, previous: flow.GroupState, now: datetime, *, read: MembersRead,
               writes: _Writes, candidates: dict[int, Candidate] | None, ratings: list[RatingRow] | None) -> None:
    if isinstance(effect, flow.StoreTimedOutDrafts):
        stored = store_timed_out_drafts(group, effect.phase, read, previous, now, writes, candidates=candidates)
        if ratings is not None:
            ratings.extend(stored)  # the winner counts the ratings stored from drafts too
    elif isinstance(effect, flow.EnqueueGeneration):
        from .dispatch import enqueue_generation

        group.generation_status = ""  # saved by _apply's final _touch
        enqueue_generation(group_id=group.pk, round=effect.round)
    elif isinstance(effect, flow.ChooseWinner):
        # The caller's candidates and ratings are those of the phase that ended, the winner's round.
        winner_choose(group, effect.round, writes, candidates=candidates, ratings=ratings)
    elif isinstance(effect, flow.FinishGroup):
        group_finish(group, effect.outcome, previous, now, writes=writes)
    else:  # pragma: no cover - the flow module defines every effect
        raise AssertionError(effect)


def lock_group(group_id: int, *, no_key: bool = False) -> Group:
    """The group, row-locked for the rest of the transaction, with what its pushed state shows loaded.

    Submissions take ``FOR NO KEY UPDATE`` (``no_key``): it orders them like a full lock but lets drafts pass
    (``drafts_save`` takes ``FOR KEY SHARE``). Every other change (deadlines, presence, a forced advance) holds
    ``FOR UPDATE`` before it reads the members and their drafts, so a draft being written meanwhile either
    committed before that read or waits and then sees the new phase (``store_timed_out_drafts`` says why a
    submission that ends a phase needs no more)."""
    return (_LOCK_GROUP_NO_KEY if no_key else _LOCK_GROUP).one(pk=group_id)


def _lock_group_query(no_key: bool) -> Prepared:
    # Compiled once per process (core.prepared): with its five related tables this query took 1.9 ms to compile.
    return Prepared(lambda pk: Group.objects.select_for_update(of=("self",), no_key=no_key)
                    .select_related("study", "arm", "question", "winner_round1", "winner_round2").filter(pk=pk),
                    pk=int)


_LOCK_GROUP, _LOCK_GROUP_NO_KEY = _lock_group_query(False), _lock_group_query(True)


def group_apply(*, group_id: int, event: flow.Event, now: datetime | None = None) -> flow.Transition:
    now = now or timezone.now()
    with transaction.atomic():
        return _apply(lock_group(group_id), event, now)


def group_force_advance(*, group_id: int, user: str = "") -> flow.Transition:
    with transaction.atomic():
        group = lock_group(group_id)
        return _apply(group, flow.ForceAdvance(), timezone.now(),
                      logged=(group_event(group, "forced_by_experimenter", user=user, phase=group.phase),))


# --- group creation -------------------------------------------------------------------------
def next_question(study: Study) -> Question:
    """The study question used by the fewest groups so far (round-robin by arrival); with
    ``questions_from_train_split`` only questions whose ``subtopic_split`` is train are drawn."""
    questions = study.questions.all()
    if study.questions_from_train_split:
        questions = questions.filter(subtopic_split="train")
    question = (
        questions.annotate(n=Count("groups", filter=Q(groups__study=study)))
        .order_by("n", "id").first()
    )
    if question is None:
        if study.questions_from_train_split:
            raise SubmissionError("no_questions", gettext_lazy("This study has no questions in the train split "
                                                               "(run split_questions first)."))
        raise SubmissionError("no_questions", gettext_lazy("This study has no questions yet."))
    return question


def assign_condition(study: Study, ordinal: int, participant_ids: tuple[int, ...],
                     arm: StudyArm | None = None) -> tuple[str, int | None]:
    """Leave-one-out condition by permuted blocks: of every block of ``d`` consecutive groups of an arm (of the
    study, without ``arm``), exactly ``n`` (share ≈ n/d) are leave-one-out, which ones drawn from the study seed;
    the excluded member likewise. Reproducible from (seed, the group's ordinal in its arm, seat), independent of
    database ids. The study's first arm draws with the seeds a study without arms always had."""
    share = (arm.leave_one_out_share if arm is not None else study.leave_one_out_share) or 0.0
    if share <= 0 or len(participant_ids) < 2:
        return "standard", None
    fraction = Fraction(share).limit_denominator(20)
    label = "condition" if arm is None or _is_first_arm(arm) else ("condition", "arm", arm.pk)
    if block_rank(seed=study.generation_seed, label=label, ordinal=ordinal,
                  size=fraction.denominator) >= fraction.numerator:
        return "standard", None
    seat_label = ("excluded",) if arm is None or _is_first_arm(arm) else ("excluded", "arm", arm.pk)
    seat = random.Random(derive_seed(study.generation_seed, *seat_label, ordinal)).randrange(len(participant_ids))
    return "leave_one_out", participant_ids[seat]


def _is_first_arm(arm: StudyArm) -> bool:
    return not StudyArm.objects.filter(study_id=arm.study_id, pk__lt=arm.pk).exists()


def study_arms_ensure(study: Study) -> list[StudyArm]:
    """The study's arms; a study made in code without any gets one from its own settings (``from_study``)."""
    arms = list(StudyArm.objects.filter(study=study).order_by("id"))
    if not arms:
        arm = StudyArm.from_study(study)
        arm.save()
        arms = [arm]
    return arms


def assign_arm(study: Study, ordinal: int, *, group_size: int = 0,
               arms: list[StudyArm] | None = None) -> StudyArm | None:
    """The arm of the study's ``ordinal``-th group, by seeded permuted blocks (``core.blocks``): each arm appears
    ``weight`` times in every block. An arm at its cap is skipped: the next slots of the sequence decide, so the
    remaining arms keep their ratio. None when every arm is full."""
    arms = arms if arms is not None else study_arms_ensure(study)
    capped = any(arm_has_cap(a) for a in arms)
    usage = {row["arm"]: row for row in Group.objects.filter(study=study, arm__in=arms).values("arm")
             .annotate(groups=Count("id", distinct=True), members=Count("members", distinct=True))} if capped else {}
    open_arms = [a for a in arms if not arm_is_full(a, groups=usage.get(a.pk, {}).get("groups", 0),
                                                    members=usage.get(a.pk, {}).get("members", 0),
                                                    joining=group_size)]
    if not open_arms:
        return None
    choices = [(arm.pk, arm.weight) for arm in arms]
    by_id = {arm.pk: arm for arm in open_arms}
    size = sum(arm.weight for arm in arms)
    for step in range(size * 2):  # every arm appears in any run of two blocks' length
        arm_id = weighted_block_choice(choices, seed=study.generation_seed, label="arm", ordinal=ordinal + step)
        if arm_id in by_id:
            return by_id[arm_id]
    return open_arms[0]  # pragma: no cover - unreachable: every open arm appears within two blocks


def group_create(*, study: Study, participant_ids: tuple[int, ...], now: datetime) -> Group | None:
    """Form a group from lobby members (caller holds the study lock). None, and the study closes itself, when a
    cap leaves no room for it (``deliberation.caps``)."""
    arms = study_arms_ensure(study)
    ordinal = Group.objects.filter(study=study).count()
    if study.max_groups is not None and ordinal >= study.max_groups:
        study_close_if_full(study=study, arms=arms)
        return None
    arm = assign_arm(study, ordinal, group_size=len(participant_ids), arms=arms)
    if arm is None:
        study_close_if_full(study=study, arms=arms)
        return None
    question = next_question(study)
    state = flow.initial_state(tuple(flow.MemberView(pid, connected=True) for pid in participant_ids),
                               now, study.flow_config)
    condition, excluded = assign_condition(study, Group.objects.filter(arm=arm).count(), participant_ids, arm=arm)
    group = Group.objects.create(study=study, question=question, phase=state.phase.value,
                                 deadline=state.deadline, phase_started_at=now, condition=condition,
                                 excluded_participant_id=excluded, arm=arm)
    Participant.objects.bulk_update([  # one UPDATE for the whole group
        Participant(pk=pid, group=group, position=position, status=Participant.Status.IN_GROUP)
        for position, pid in enumerate(participant_ids, start=1)], ["group", "position", "status"])
    log_event(group, "group_formed", members=list(participant_ids), question_id=question.pk, condition=condition,
              arm=arm.provenance())
    # Each member's socket shows the new group from this state, without a read (``PushView``); the lobby gets
    # the number left from lobby_match.
    group.study, group.question = study, question
    joined = shared_state_formed(group, participant_ids)
    realtime.push_after_commit(participants=participant_ids, joined=joined)
    study_close_if_full(study=study, arms=arms)
    return group


# --- submissions ----------------------------------------------------------------------------
def _may_write_error(status: str | None, group_id: int | None, taken_over: bool,
                     expected_group_id: int | None) -> SubmissionError | None:
    """Why a member with this row (status, group, taken over) may not write for ``expected_group_id``; None:
    they may."""
    if taken_over:
        return SubmissionError("taken_over", gettext_lazy(
            "You were away for too long, so a simulated participant finished the group in your place. Your earlier "
            "answers are kept; you cannot answer any more."))
    if group_id is None and status in (Participant.Status.JOINED, Participant.Status.LOBBY):
        return SubmissionError("not_in_group", gettext_lazy("You are not in a group yet."))
    if status != Participant.Status.IN_GROUP or group_id != expected_group_id:
        return SubmissionError("not_in_group", gettext_lazy("You are no longer in a group, so you cannot answer any "
                                                            "more."))
    return None


_MAY_WRITE = Prepared(lambda pk: Participant.objects.filter(pk=pk).values_list("status", "group_id", "taken_over_at"),
                      pk=int)


def _ensure_may_write(participant: Participant) -> None:
    """Only a member still in their group writes. Once a seat is taken over (``deliberation/takeover.py``) its
    answers come from the bot alone (it passes ``by_bot=True``), so a person who comes back cannot mix their
    answers with the bot's. Read fresh: the caller's ``participant`` may be older than the take-over. A person
    being taken over has no open socket (the take-over checks that under their row lock), so no write of theirs
    is in flight then; a group that finishes meanwhile refuses it by its phase."""
    row = _MAY_WRITE.first(pk=participant.pk)
    status, group_id, taken_over_at = row or (None, None, None)
    error = _may_write_error(status, group_id, taken_over_at is not None, participant.group_id)
    if error is not None:
        raise error


def _ensure_member_may_write(read: MembersRead, participant: Participant) -> None:
    """``_ensure_may_write`` from the members' read made under the group's lock (fresher than a read before
    it, and no statement of its own). A member missing from it has left the group: the fresh read says why."""
    row = read.row(participant.pk)
    if row is None:
        _ensure_may_write(participant)
        raise _may_write_error(None, None, False, participant.group_id)  # no longer in a group
    error = _may_write_error(row.status, participant.group_id, row.taken_over, participant.group_id)
    if error is not None:
        raise error


def submission_replay(*, participant: Participant, ref: str | None, kind: str,
                      round: int | None = None) -> SubmitResult | None:
    """The original result of a submission already stored under the client's ``ref`` (a retry whose ack was
    lost: a dropped connection, a restarted server, a reload), or None. Read first, before any other check: the
    group may have moved on or finished since, and the answer is the original ack all the same."""
    if not ref:
        return None
    stored = _RECEIPT.first(participant_id=participant.pk, ref=ref)
    if stored is None:
        return None
    if stored != (kind, round):
        raise SubmissionError("invalid", gettext_lazy("That reference was already used for another answer."))
    return SubmitResult(created=True, replayed=True)


_RECEIPT = Prepared(lambda participant_id, ref: SubmissionReceipt.objects.filter(participant_id=participant_id, ref=ref)
                    .values_list("kind", "round")[:1], participant_id=int, ref=str)


def _claim_sql() -> str:
    meta = SubmissionReceipt._meta
    columns = ", ".join(meta.get_field(name).column for name in ("participant", "ref", "group", "kind", "round",
                                                                   "created_at"))
    return (f'INSERT INTO "{meta.db_table}" ({columns}) VALUES (%s, %s, %s, %s, %s, %s) '
            f'ON CONFLICT ("{meta.get_field("participant").column}", "{meta.get_field("ref").column}") DO NOTHING '
            f'RETURNING "{meta.pk.column}"')  # the unique constraint one_receipt_per_ref; PostgreSQL and SQLite


def _claim_ref(participant: Participant, ref: str | None, kind: str, round: int | None = None) -> SubmitResult | None:
    """The submission's receipt, stored first in its own transaction (rolled back with it if the submission
    fails), or the original result if ``ref`` was stored before (``submission_replay``: a retry whose ack was
    lost gets it even if the group has moved on or finished since). One statement when the ref is new: an INSERT
    that does nothing on a conflict, no savepoint. A second submission with the same ref while the first is
    still in flight (a reload, a reconnect to another process) waits on the unique index until the first ends;
    if that one was stored, it gets its result."""
    if not ref:
        return None
    if participant.group_id is None:  # nothing to claim: the checks that follow refuse it
        return submission_replay(participant=participant, ref=ref, kind=kind, round=round)
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(), [participant.pk, ref, participant.group_id, kind, round,
                                      connection.ops.adapt_datetimefield_value(timezone.now())])
        if cursor.fetchone() is not None:
            return None
    replay = submission_replay(participant=participant, ref=ref, kind=kind, round=round)
    if replay is None:  # pragma: no cover - the conflicting row was committed, so it is visible now
        raise IntegrityError(f"receipt {ref!r} of participant {participant.pk} conflicts but cannot be read")
    return replay


def _release_ref(participant: Participant, ref: str | None) -> None:
    """A resubmission of an answer already stored under another ref stores nothing: nor its receipt."""
    if ref:
        SubmissionReceipt.objects.filter(participant_id=participant.pk, ref=ref).delete()


def _locked_group(participant: Participant) -> Group:
    """The member's group, row-locked for the rest of the transaction. Every check of what is already stored
    comes after this lock: two submissions of one member at once (a double click, two tabs, a retry after a
    reconnect) would both pass a check made before it, and the second would then hit the unique constraint."""
    if participant.group_id is None:
        _ensure_may_write(participant)  # says why (not yet, or no longer) if it can
        raise SubmissionError("not_in_group", gettext_lazy("You are not in a group yet."))
    return lock_group(participant.group_id, no_key=True)


def _answered(read: MembersRead, participant: Participant) -> bool:
    row = read.row(participant.pk)
    return row is not None and row.answered


def _ensure_phase(group: Group, phase: Phase | tuple[Phase, ...]) -> None:
    phases = phase if isinstance(phase, tuple) else (phase,)
    if Phase(group.phase) not in phases:
        raise SubmissionError("wrong_phase", format_lazy(
            gettext_lazy("That is not possible now: the group is in the {phase} phase."),
            phase=PHASE_NAMES[Phase(group.phase)]))


def _already_submitted(what: str, by_timeout: bool) -> SubmissionError:
    """A second, different answer: refused with a clear reply; the stored answer stays as it was."""
    return SubmissionError("already_submitted", (STORED_BY_TIMEOUT if by_timeout else ALREADY_SUBMITTED)[what])


def _text_resubmitted(stored, text: str, *, what: str, max_chars: int, min_words: int) -> SubmitResult:
    """The same text again (a retry, a second tab) is acknowledged as stored; a different one is refused."""
    try:
        same = clean_text(text, max_chars=max_chars, what=what, min_words=min_words) == stored.text
    except SubmissionError:
        same = False
    if not same:
        raise _already_submitted(what, stored.by_timeout)
    return SubmitResult(created=False, stored=stored.text)


def _response_seconds(group: Group, now: datetime) -> float:
    return max(0.0, (now - group.phase_started_at).total_seconds())


def opinion_submit(*, participant: Participant, text: str, by_bot: bool = False,
                   ref: str | None = None) -> SubmitResult:
    """``by_bot``: written by the take-over bot for a member who dropped out (the only writer for them then).
    ``ref``: the client's id for this submission; the same ref again gets the original result (``created=True``,
    ``replayed=True``) and stores nothing."""
    now = timezone.now()
    with transaction.atomic():
        # First, before the group lock: a retry gets its original result whatever happened since, and a
        # second copy with the same ref waits on the receipt's unique index, then gets the first one's.
        if replay := _claim_ref(participant, ref, "opinion"):
            return replay
        # Under the lock: one read of the members (whether this one may write, and answered before), then the
        # insert, the events, the version bump (tests/deliberation/test_lean_path.py counts the statements).
        group = _locked_group(participant)
        read = group_members(group, now, answered="opinion")
        if not by_bot:
            _ensure_member_may_write(read, participant)
        if _answered(read, participant):
            _release_ref(participant, ref)
            return _text_resubmitted(Opinion.objects.get(participant=participant, group=group), text,
                                     what="opinion", max_chars=group.study.max_text_chars, min_words=3)
        _ensure_phase(group, Phase.OPINION)
        text = clean_text(text, max_chars=group.study.max_text_chars, what="opinion", min_words=3)
        Opinion.objects.create(group=group, participant=participant, text=text,
                               response_seconds=_response_seconds(group, now), by_bot=by_bot)
        _apply(group, flow.Submitted(participant.pk), now, read=read, stored_by=participant.pk,
               logged=(group_event(group, "opinion_submitted", participant),))
    return SubmitResult(created=True, stored=text)


def critique_submit(*, participant: Participant, text: str, by_bot: bool = False,
                    ref: str | None = None) -> SubmitResult:
    now = timezone.now()
    with transaction.atomic():
        # First, before the group lock: a retry gets its original result whatever happened since, and a
        # second copy with the same ref waits on the receipt's unique index, then gets the first one's.
        if replay := _claim_ref(participant, ref, "critique"):
            return replay
        group = _locked_group(participant)
        read = group_members(group, now, answered="critique")
        if not by_bot:
            _ensure_member_may_write(read, participant)
        if _answered(read, participant):
            _release_ref(participant, ref)
            return _text_resubmitted(Critique.objects.get(participant=participant, group=group), text,
                                     what="critique", max_chars=group.study.max_text_chars, min_words=1)
        _ensure_phase(group, Phase.CRITIQUE)
        text = clean_text(text, max_chars=group.study.max_text_chars, what="critique", min_words=1)
        Critique.objects.create(group=group, participant=participant, candidate_id=group.winner_round1_id,
                                text=text, response_seconds=_response_seconds(group, now), by_bot=by_bot)
        _apply(group, flow.Submitted(participant.pk), now, read=read, stored_by=participant.pk,
               logged=(group_event(group, "critique_submitted", participant),))
    return SubmitResult(created=True, stored=text)


def _shown_candidates(group: Group, round_: int, *, with_ratings: bool = False
                      ) -> tuple[dict[int, Candidate], list[RatingRow] | None]:
    """The round's shown candidates (what its rating form shows), by id, in one query. ``with_ratings``: every
    rating of the round stored so far comes along in the same query (a LEFT JOIN), for a submission that ends
    the round and so chooses its winner."""
    fields = ["id", "index", "text", "source"]
    joined = ["ratings__participant_id", "ratings__rank", "ratings__agreement"] if with_ratings else []
    candidates: dict[int, Candidate] = {}
    ratings: list[RatingRow] = []
    for cid, index, text, source, *rating in (Candidate.objects.filter(group=group, round=round_, shown=True)
                                              .order_by("index").values_list(*fields, *joined)):
        if cid not in candidates:  # loaded as the ORM would with .only(): any other field is read on access
            loaded = {"id": cid, "group_id": group.pk, "round": round_, "index": index, "text": text,
                      "source": source, "shown": True}
            candidates[cid] = Candidate.from_db(connection.alias, list(loaded), [  # in the model's field order
                loaded[f.attname] for f in Candidate._meta.concrete_fields if f.attname in loaded])
        if rating and rating[0] is not None:
            ratings.append((rating[0], cid, rating[1], rating[2]))
    return candidates, (ratings if with_ratings else None)


def _validate_ratings(group: Group, round_: int, ratings: dict[int, dict], ranking: list[int], *,
                      complete: bool, candidates: dict[int, Candidate] | None = None) -> dict[int, Candidate]:
    if candidates is None:
        candidates, _ = _shown_candidates(group, round_)
    unknown = (set(ratings) | set(ranking)) - set(candidates)
    if unknown:
        raise SubmissionError("forbidden", gettext_lazy("Those statements are not part of your group's current "
                                                        "round."))
    if complete:
        if set(ratings) != set(candidates):
            raise SubmissionError("incomplete", gettext_lazy("Please rate every statement."))
        if sorted(ranking) != sorted(candidates):
            raise SubmissionError("incomplete", gettext_lazy("Please rank every statement exactly once."))
    for values in ratings.values():
        for key in ("agreement", "quality"):
            value = values.get(key)
            if complete and value is None:
                raise SubmissionError("incomplete", gettext_lazy("Please give every statement an agreement and a "
                                                                 "quality rating."))
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 7):
                raise SubmissionError("invalid", gettext_lazy("Ratings are whole numbers from 1 to 7."))
    if len(set(ranking)) != len(ranking):
        raise SubmissionError("invalid", gettext_lazy("Each statement can appear only once in the ranking."))
    return candidates


def _ratings_view(ratings: dict[int, dict], rank_of: dict[int, int]) -> dict[str, dict]:
    """Ratings as a snapshot shows them: by candidate id, with the rank."""
    return {str(cid): {"agreement": values.get("agreement"), "quality": values.get("quality"),
                       "rank": rank_of.get(cid)} for cid, values in ratings.items()}


def ratings_submit(*, participant: Participant, round: int, ratings: dict[int, dict], ranking: list[int],
                   by_bot: bool = False, ref: str | None = None) -> SubmitResult:
    now = timezone.now()
    phase = Phase.RATING if round == 1 else Phase.FINAL_RATING
    rank_of = {cid: i + 1 for i, cid in enumerate(ranking)}
    with transaction.atomic():
        # First, before the group lock: a retry gets its original result whatever happened since, and a
        # second copy with the same ref waits on the receipt's unique index, then gets the first one's.
        if replay := _claim_ref(participant, ref, "ratings", round):
            return replay
        group = _locked_group(participant)
        read = group_members(group, now, answered=f"rating{round}")
        if not by_bot:
            _ensure_member_may_write(read, participant)
        stored = list(Rating.objects.filter(participant=participant, group=group, round=round)) \
            if _answered(read, participant) else []
        if stored:
            view = {str(r.candidate_id): {"agreement": r.agreement, "quality": r.quality, "rank": r.rank}
                    for r in stored}
            if view != _ratings_view(ratings, rank_of):
                raise _already_submitted("ratings", any(r.by_timeout for r in stored))
            _release_ref(participant, ref)
            return SubmitResult(created=False, stored=view)
        _ensure_phase(group, phase)
        # The last answer of the round chooses its winner from all the round's ratings: read with the candidates.
        ends_round = flow.everyone_connected_submitted(flow_state(group, read, stored_by=participant.pk))
        candidates, round_ratings = _shown_candidates(group, round, with_ratings=ends_round)
        _validate_ratings(group, round, ratings, ranking, complete=True, candidates=candidates)
        seconds = _response_seconds(group, now)
        rows = Rating.objects.bulk_create([
            Rating(participant=participant, candidate_id=cid, group=group, round=round,
                   agreement=values["agreement"], quality=values["quality"], rank=rank_of[cid],
                   response_seconds=seconds, by_bot=by_bot)
            for cid, values in ratings.items()
        ])
        if round_ratings is not None:
            round_ratings += [(participant.pk, r.candidate_id, r.rank, r.agreement) for r in rows]
        _apply(group, flow.Submitted(participant.pk), now, read=read, stored_by=participant.pk,
               candidates=candidates, ratings=round_ratings,
               logged=(group_event(group, "ratings_submitted", participant, round=round, ranking=ranking),))
    return SubmitResult(created=True, stored=_ratings_view(ratings, rank_of))


@dataclass(frozen=True)
class DraftWrite:
    """One member's draft. ``group_id``: the group the member's page shows (None: none, so it is refused)."""
    participant_id: int
    group_id: int | None
    phase: str
    payload: dict


def draft_save(*, participant: Participant, phase: str, payload: dict) -> bool:
    """Keep what a member has typed so far; silently ignored (False) once the phase has moved on, refused once
    they are no longer in the group or their seat was taken over. One draft of ``drafts_save``."""
    outcome = drafts_save([DraftWrite(participant.pk, participant.group_id, phase, payload)])[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def drafts_save(writes: list[DraftWrite]) -> list[bool | Exception]:
    """Many members' drafts at once (the sockets of one process, ``deliberation.drafts``): for each, True
    (stored), False (their group's phase has moved on: nothing stored), the SubmissionError saying why they may
    not write (no longer in the group, seat taken over) or the database's error refusing that draft. The newest
    of one member's drafts of a phase is the one written.

    Without the group's row lock: on PostgreSQL one statement that takes each group's row ``FOR KEY SHARE``,
    which no submission and no other draft waits for, then upserts the drafts whose group is still in that
    phase. It waits only for a change holding the group ``FOR UPDATE`` (every change but a submission, a
    deadline among them): a change that locked the group first has committed when the lock is granted, and the
    statement sees its new phase and stores nothing; a change that comes later waits for this commit and reads
    these drafts. So a draft acknowledged as saved is never older than what a deadline stores (a submission that
    ends a phase: ``store_timed_out_drafts``). If the statement fails (a row the database refuses), each draft
    is written alone, so one bad draft loses no other."""
    outcomes: list[bool | Exception] = [False] * len(writes)
    todo = [i for i, w in enumerate(writes) if w.phase in {p.value for p in flow.INPUT_PHASES}]
    if not todo:
        return outcomes
    if connection.vendor != "postgresql":  # the demo's SQLite has one writer at a time
        for i in todo:
            outcomes[i] = _draft_save_one(writes[i])
        return outcomes
    try:
        with transaction.atomic():
            for i, outcome in zip(todo, _drafts_upsert([writes[i] for i in todo])):
                outcomes[i] = outcome
    except (DataError, IntegrityError):
        if len(todo) == 1:
            raise
        logger.warning("a batch of %d drafts was refused; writing them one by one", len(todo))
        for i in todo:
            try:
                with transaction.atomic():
                    outcomes[i] = _drafts_upsert([writes[i]])[0]
            except (DataError, IntegrityError) as exc:  # this draft's own outcome: its socket says so
                outcomes[i] = exc
    return outcomes


_DRAFTS_UPSERT = """
WITH input AS (
    SELECT * FROM unnest(%(participants)s::bigint[], %(groups)s::bigint[], %(phases)s::text[],
                         %(payloads)s::text[]) AS i(participant_id, shown_group_id, phase, payload)
), members AS (
    SELECT i.participant_id, i.phase, i.payload, p.status, p.group_id AS member_of,
           p.taken_over_at IS NOT NULL AS taken_over, i.shown_group_id AS group_id
    FROM input i LEFT JOIN {participant} p ON p.id = i.participant_id
), groups AS (
    SELECT id, phase FROM {group} WHERE id IN (SELECT group_id FROM members) ORDER BY id FOR KEY SHARE
), checked AS (
    SELECT m.*, g.phase AS group_phase FROM members m LEFT JOIN groups g ON g.id = m.group_id
), stored AS (
    INSERT INTO {draft} (group_id, participant_id, phase, payload, updated_at)
    SELECT group_id, participant_id, phase, payload::jsonb, %(now)s FROM checked
    WHERE status = %(in_group)s AND member_of = group_id AND NOT taken_over AND group_phase = phase
    ON CONFLICT (group_id, participant_id, phase)
    DO UPDATE SET payload = EXCLUDED.payload, updated_at = EXCLUDED.updated_at
    RETURNING participant_id, phase
)
SELECT c.participant_id, c.phase, c.status, c.member_of, c.taken_over, c.group_id, s.participant_id IS NOT NULL
FROM checked c LEFT JOIN stored s ON s.participant_id = c.participant_id AND s.phase = c.phase
"""


def _drafts_upsert(writes: list[DraftWrite]) -> list[bool | SubmissionError]:
    """``drafts_save``'s statement, in the caller's transaction."""
    newest = {(w.participant_id, w.phase): w for w in writes}  # one row per key: ON CONFLICT touches a row once
    sql = _DRAFTS_UPSERT.format(participant=Participant._meta.db_table, group=Group._meta.db_table,
                                draft=Draft._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, {
            "participants": [w.participant_id for w in newest.values()],
            "groups": [w.group_id for w in newest.values()],
            "phases": [w.phase for w in newest.values()],
            "payloads": [json.dumps(w.payload) for w in newest.values()],
            "now": timezone.now(), "in_group": Participant.Status.IN_GROUP.value})
        rows = cursor.fetchall()
    result: dict[tuple[int, str], bool | SubmissionError] = {}
    for participant_id, phase, status, member_of, taken_over, group_id, stored in rows:
        error = _may_write_error(status, member_of, bool(taken_over), group_id)
        result[(participant_id, phase)] = error if error is not None else bool(stored)
    return [result[(w.participant_id, w.phase)] for w in writes]


def _draft_save_one(write: DraftWrite) -> bool | SubmissionError:
    """One draft where there is one writer at a time (SQLite): check, upsert, read the phase."""
    with transaction.atomic():
        row = Participant.objects.filter(pk=write.participant_id) \
            .values_list("status", "group_id", "taken_over_at").first()
        status, member_of, taken_over_at = row or (None, None, None)
        group_id = write.group_id
        error = _may_write_error(status, member_of, taken_over_at is not None, group_id)
        if error is not None:
            return error
        Draft.objects.bulk_create([Draft(group_id=group_id, participant_id=write.participant_id, phase=write.phase,
                                         payload=write.payload, updated_at=timezone.now())],
                                  update_conflicts=True, unique_fields=["group", "participant", "phase"],
                                  update_fields=["payload", "updated_at"])
        if Group.objects.filter(pk=group_id).values_list("phase", flat=True).first() != write.phase:
            transaction.set_rollback(True)
            return False
    return True


def store_timed_out_drafts(group: Group, phase: Phase, read: MembersRead, previous: flow.GroupState, now: datetime,
                           writes: _Writes, *, candidates: dict[int, Candidate] | None = None) -> list[RatingRow]:
    """At the end of a phase, store each non-submitter's draft as their answer, flagged by_timeout; return the
    ratings stored (the winner counts them). The drafts are those of the members read under the group's lock;
    ``candidates``: the ended round's shown candidates, if the caller loaded them (else read per rating draft).

    Why that read is recent enough. A change other than a submission (a deadline, a forced advance, a presence
    change) locks the group ``FOR UPDATE`` before it reads the members: a draft being written holds
    ``FOR KEY SHARE`` until its commit, so it either committed before the read (and is read) or waits for this
    transaction and then sees the new phase and is refused, never acknowledged (``drafts_save``). A submission
    holds only ``FOR NO KEY UPDATE``, which drafts pass, and ends a phase only when every connected member has
    submitted. If every member has, there is no draft to store, and a draft written meanwhile is never an
    answer. Otherwise the drafts stored are those of members with no live socket at the read. A socket that
    opens (or registers again after its row was swept) applies its presence change under the group's
    ``FOR UPDATE`` lock, which waits for this transaction, before Channels hands the consumer its next message,
    so its drafts come after the commit, see the new phase and are refused. A draft could only pass from a socket
    still registered but silent for longer than the presence timeout, in the moment of this transaction; that
    member's stored answer is then the draft read here, not the newer words. An upgrade to ``FOR UPDATE`` and a
    second read of the drafts would close that gap at two more statements under the lock for every
    phase-ending submission with somebody away (issue 16 item 3 counts them); the group had stopped waiting
    for that member anyway.

    Each draft is stored in a savepoint of its own: one the database refuses (a constraint, a value it cannot
    hold) is rolled back alone and logged as ``draft_discarded``; without the savepoint, PostgreSQL would refuse
    every later statement of the transaction, the whole transition would fail, and the group would stall at its
    deadline (every sweep retrying the same draft)."""
    pending = {m.participant_id for m in previous.members if not m.submitted}
    drafts = sorted((r for r in read.rows if r.id in pending and r.draft_id is not None), key=lambda r: r.draft_id)
    seconds = _response_seconds(group, now)
    stored: list[RatingRow] = []
    for member in drafts:
        try:
            with transaction.atomic():
                rows = _store_draft(group, phase, member.id, member.draft, seconds, candidates)
        except (SubmissionError, IntegrityError, DataError, TypeError, ValueError, AttributeError) as exc:
            writes.events.append(group_event(group, "draft_discarded", None, participant_id=member.id,
                                             reason=str(exc)[:200]))
            continue
        stored += rows
        writes.events.append(group_event(group, "stored_by_timeout", None, participant_id=member.id,
                                         phase=phase.value))
    return stored


def _store_draft(group: Group, phase: Phase, participant_id: int, payload: Any, seconds: float,
                 candidates: dict[int, Candidate] | None) -> list[RatingRow]:
    payload = payload if isinstance(payload, dict) else {}
    limit = group.study.max_text_chars
    if phase is Phase.OPINION:
        text = clean_text(str(payload.get("text", ""))[:limit], max_chars=limit, what="opinion")
        Opinion.objects.create(group=group, participant_id=participant_id, text=text,
                               response_seconds=seconds, by_timeout=True)
    elif phase is Phase.CRITIQUE:
        text = clean_text(str(payload.get("text", ""))[:limit], max_chars=limit, what="critique")
        Critique.objects.create(group=group, participant_id=participant_id, text=text,
                                candidate_id=group.winner_round1_id, response_seconds=seconds, by_timeout=True)
    else:
        return _store_rating_draft(group, phase, participant_id, payload, seconds, candidates)
    return []


def _store_rating_draft(group: Group, phase: Phase, participant_id: int, payload: dict, seconds: float,
                        candidates: dict[int, Candidate] | None) -> list[RatingRow]:
    round_ = flow.round_of(phase)
    ratings = {int(k): v for k, v in (payload.get("ratings") or {}).items() if isinstance(v, dict)}
    ranking = [int(c) for c in payload.get("ranking") or []]
    candidates = _validate_ratings(group, round_, ratings, ranking, complete=False, candidates=candidates)
    full_ranking = sorted(ranking) == sorted(candidates)
    rank_of = {cid: i + 1 for i, cid in enumerate(ranking)} if full_ranking else {}
    rows = []
    for cid in candidates:
        values = ratings.get(cid, {})
        if values.get("agreement") is None and values.get("quality") is None and cid not in rank_of:
            continue
        rows.append(Rating(participant_id=participant_id, candidate_id=cid, group=group, round=round_,
                           agreement=values.get("agreement"), quality=values.get("quality"),
                           rank=rank_of.get(cid), response_seconds=seconds, by_timeout=True))
    Rating.objects.bulk_create(rows)
    return [(r.participant_id, r.candidate_id, r.rank, r.agreement) for r in rows]


# --- winners and finishing ------------------------------------------------------------------
def winner_choose(group: Group, round_: int, writes: _Writes, *, candidates: dict[int, Candidate] | None = None,
                  ratings: list[RatingRow] | None = None) -> Candidate | None:
    """The round's winner among the shown model statements by the study's rule over the members' rankings.

    Members' opinions shown as comparators are ranked too but cannot win: each ballot is restricted to the
    model statements, keeping the member's order. ``candidates`` (the round's shown ones) and ``ratings`` (every
    rating of the round) when the caller has them, else read here, the ratings in one query. The winner goes
    into ``writes`` (saved with the group's other fields)."""
    if candidates is not None:
        model = sorted((c for c in candidates.values() if c.source == Candidate.Source.MODEL), key=lambda c: c.index)
    else:
        model = list(Candidate.objects.filter(group=group, round=round_, shown=True,
                                              source=Candidate.Source.MODEL).order_by("index"))
    if not model:
        return None
    ids = [c.pk for c in model]
    if ratings is None:
        ratings = list(Rating.objects.filter(group=group, round=round_, candidate_id__in=ids)
                       .values_list("participant_id", "candidate_id", "rank", "agreement"))
    ballots: dict[int, list[tuple[int, int]]] = {}
    means: dict[int, list[int]] = {cid: [] for cid in ids}
    for participant_id, candidate_id, rank, agreement in ratings:
        if candidate_id not in means:
            continue
        if rank is not None:
            ballots.setdefault(participant_id, []).append((rank, candidate_id))
        if agreement is not None:
            means[candidate_id].append(agreement)
    rankings = [[cid for _, cid in sorted(b)] for _, b in sorted(ballots.items()) if len(b) == len(ids)]
    if rankings:
        method = group.study.aggregation_method
        result = elect(method, rankings, ids, seed=derive_seed(group.study.generation_seed, group.pk, round_, "winner"))
        winner_id, details = result.winner, {"tied_winners": list(result.tied_winners),
                                             "tie_broken_by": result.tie_broken_by}
    else:  # nobody ranked in time: fall back to mean agreement, then to the first candidate
        winner_id = max(ids, key=lambda c: (sum(means[c]) / len(means[c]) if means[c] else 0, -ids.index(c)))
        method, details = "mean_agreement_fallback", {}
    winner = next(c for c in model if c.pk == winner_id)
    setattr(group, f"winner_round{round_}", winner)
    writes.fields[f"winner_round{round_}"] = winner
    writes.events.append(group_event(group, "winner_chosen", None, round=round_, candidate_id=winner_id,
                                     method=method, ballots=len(rankings), **details))
    return winner


def group_finish(group: Group, outcome: str, previous: flow.GroupState, now: datetime, *,
                 writes: _Writes | None = None) -> None:
    """Finish a locked group: its outcome, and each member's status and completion code in one UPDATE. Within a
    transition (``writes``) the group's fields and the event are written with the transition's; alone, here."""
    alone = writes is None
    writes = writes if writes is not None else _Writes()
    group.outcome = outcome
    group.finished_at = now
    writes.fields.update(outcome=outcome, finished_at=now)
    study = group.study
    completed_ids = [m.participant_id for m in previous.members if m.submitted or m.connected]
    dropped_ids = [m.participant_id for m in previous.members if not (m.submitted or m.connected)]
    completed, dropped = Participant.Status.COMPLETED, Participant.Status.DROPPED
    if previous.members:
        # Who completed and who dropped out differ only in these two values: one statement for all members.
        Participant.objects.filter(pk__in=completed_ids + dropped_ids, status=Participant.Status.IN_GROUP).update(
            status=Case(When(pk__in=completed_ids, then=Value(completed.value)), default=Value(dropped.value)),
            completion_code=Case(When(pk__in=completed_ids, then=Value(study.completion_code(completed.value))),
                                 default=Value(study.completion_code(dropped.value))),
            finished_at=now)
    writes.statuses.update({pid: completed.value for pid in completed_ids})
    writes.statuses.update({pid: dropped.value for pid in dropped_ids})
    writes.events.append(group_event(group, "group_finished", None, outcome=outcome))
    if alone:
        group.save(update_fields=list(writes.fields))
        writes.write_events()
    if alone:
        realtime.push_after_commit(participants=[m.participant_id for m in previous.members])
    else:  # after the transition's push, which carries their statuses (``_apply``)
        writes.finished.extend(m.participant_id for m in previous.members)
    if study.reward_retrain_every:
        request_reward_retraining(study_id=study.pk)


REWARD_RETRAIN_TASK = "analysis.tasks.reward_model_retrain"


def request_reward_retraining(*, study_id: int) -> None:
    """After commit, tell the analysis workers a group finished; they decide whether a retraining is due.

    Sent by name: deliberation does not import analysis (one-way layering). A lost message costs nothing
    but a delay: the task counts finished groups itself, so the next finished group catches up.
    """
    from celery import current_app

    def send() -> None:
        try:
            current_app.send_task(REWARD_RETRAIN_TASK, kwargs={"study_id": study_id})
        except Exception:  # the broker being down must not fail a participant's request
            logger.exception("could not queue reward model retraining for study %s", study_id)

    transaction.on_commit(send)
