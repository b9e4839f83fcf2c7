"""Writes for deliberation groups: transitions, submissions, drafts, winners.

Every change runs in one transaction under a row lock on the group, writes an event row,
bumps ``Group.version`` and pushes after commit (``realtime.push_after_commit``). The flow
rules themselves live in the pure ``core.flow`` module.
"""
from __future__ import annotations

import logging
import random
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy, ngettext_lazy, pgettext_lazy

from core import flow
from core.blocks import block_rank, weighted_block_choice
from core.errors import SubmissionError
from core.flow import Phase
from core.seeds import derive_seed
from core.social_choice import elect
from participants.models import Participant

from . import realtime
from .caps import arm_is_full, study_close_if_full
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


def log_event(group: Group, kind: str, participant: Participant | None = None, **payload: Any) -> None:
    GroupEvent.objects.create(group=group, kind=kind, participant=participant, payload=payload)


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
           stored_by: int | None = None, candidates: list[Candidate] | None = None) -> flow.Transition:
    """Run the pure state machine on a locked group and carry out its effects. ``read``: the members as the
    caller read them under the lock (else read here); ``stored_by``: whose answer the caller just stored;
    ``candidates``: the round's shown candidates if the caller loaded them. Without a phase change the pushed
    state is built from these reads; a phase change reads it again (its effects changed what members see)."""
    read = read or group_members(group, now)
    state = flow_state(group, read, stored_by=stored_by)
    transition = flow.advance(state, event, now, group.flow_config)
    if not transition.changed:
        submitted = {stored_by} if stored_by is not None else set()
        _touch(group, shared=shared_state_from(group, read, submitted=submitted, candidates=candidates))
        return transition
    log_event(group, "phase_changed", from_phase=group.phase, to_phase=transition.state.phase.value,
              reason=transition.reason)
    group.phase = transition.state.phase.value
    group.deadline = transition.state.deadline
    group.phase_started_at = now
    group.paused_seconds_left = None
    if group.study.paused_at is not None:  # a paused study's groups keep their time (deliberation/pause.py)
        group_freeze(group, now)
    for effect in transition.effects:
        _carry_out(group, effect, state, now)
    _touch(group, phase=group.phase, deadline=group.deadline, phase_started_at=now,
           paused_seconds_left=group.paused_seconds_left, generation_status=group.generation_status)
    return transition


def _carry_out(group: Group, effect: flow.Effect, previous: flow.GroupState, now: datetime) -> None:
    if isinstance(effect, flow.StoreTimedOutDrafts):
        store_timed_out_drafts(group, effect.phase, previous, now)
    elif isinstance(effect, flow.EnqueueGeneration):
        from .dispatch import enqueue_generation

        group.generation_status = ""  # saved by _apply's final _touch
        enqueue_generation(group_id=group.pk, round=effect.round)
    elif isinstance(effect, flow.ChooseWinner):
        winner_choose(group, effect.round)
    elif isinstance(effect, flow.FinishGroup):
        group_finish(group, effect.outcome, previous, now)
    else:  # pragma: no cover - the flow module defines every effect
        raise AssertionError(effect)


def lock_group(group_id: int, *, no_key: bool = False) -> Group:
    """The group, row-locked for the rest of the transaction, with what its pushed state shows loaded.

    Submissions take ``FOR NO KEY UPDATE`` (``no_key``): it orders them like a full lock but lets drafts pass
    (``draft_save`` takes ``FOR KEY SHARE``); transitions that may store drafts hold ``FOR UPDATE``
    (``store_timed_out_drafts`` upgrades to it), so a draft written meanwhile waits and then sees the new phase."""
    return (Group.objects.select_for_update(of=("self",), no_key=no_key)
            .select_related("study", "arm", "question", "winner_round1", "winner_round2").get(pk=group_id))


def group_apply(*, group_id: int, event: flow.Event, now: datetime | None = None) -> flow.Transition:
    now = now or timezone.now()
    with transaction.atomic():
        return _apply(lock_group(group_id), event, now)


def group_force_advance(*, group_id: int, user: str = "") -> flow.Transition:
    with transaction.atomic():
        group = lock_group(group_id)
        log_event(group, "forced_by_experimenter", user=user, phase=group.phase)
        return _apply(group, flow.ForceAdvance(), timezone.now())


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
    usage = {row["arm"]: row for row in Group.objects.filter(study=study, arm__in=arms).values("arm")
             .annotate(groups=Count("id", distinct=True), members=Count("members", distinct=True))}
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
        study_close_if_full(study=study)
        return None
    arm = assign_arm(study, ordinal, group_size=len(participant_ids), arms=arms)
    if arm is None:
        study_close_if_full(study=study)
        return None
    question = next_question(study)
    state = flow.initial_state(tuple(flow.MemberView(pid, connected=True) for pid in participant_ids),
                               now, study.flow_config)
    condition, excluded = assign_condition(study, Group.objects.filter(arm=arm).count(), participant_ids, arm=arm)
    group = Group.objects.create(study=study, question=question, phase=state.phase.value,
                                 deadline=state.deadline, phase_started_at=now, condition=condition,
                                 excluded_participant_id=excluded, arm=arm)
    for position, pid in enumerate(participant_ids, start=1):
        Participant.objects.filter(pk=pid).update(group=group, position=position, status=Participant.Status.IN_GROUP)
    log_event(group, "group_formed", members=list(participant_ids), question_id=question.pk, condition=condition,
              arm=arm.provenance())
    realtime.push_after_commit(participants=participant_ids)  # the lobby: lobby_match pushes the number left
    study_close_if_full(study=study)
    return group


# --- submissions ----------------------------------------------------------------------------
def _ensure_may_write(participant: Participant) -> None:
    """Only a member still in their group writes. Once a seat is taken over (``deliberation/takeover.py``) its
    answers come from the bot alone (it passes ``by_bot=True``), so a person who comes back cannot mix their
    answers with the bot's. Read fresh: the caller's ``participant`` may be older than the take-over. A person
    being taken over has no open socket (the take-over checks that under their row lock), so no write of theirs
    is in flight then; a group that finishes meanwhile refuses it by its phase."""
    row = Participant.objects.filter(pk=participant.pk).values_list("status", "group_id", "taken_over_at").first()
    status, group_id, taken_over_at = row or (None, None, None)
    if taken_over_at is not None:
        raise SubmissionError("taken_over", gettext_lazy(
            "You were away for too long, so a simulated participant finished the group in your place. Your earlier "
            "answers are kept; you cannot answer any more."))
    if group_id is None and status in (Participant.Status.JOINED, Participant.Status.LOBBY):
        raise SubmissionError("not_in_group", gettext_lazy("You are not in a group yet."))
    if status != Participant.Status.IN_GROUP or group_id != participant.group_id:
        raise SubmissionError("not_in_group", gettext_lazy("You are no longer in a group, so you cannot answer any "
                                                           "more."))


def submission_replay(*, participant: Participant, ref: str | None, kind: str,
                      round: int | None = None) -> SubmitResult | None:
    """The original result of a submission already stored under the client's ``ref`` (a retry whose ack was
    lost: a dropped connection, a restarted server, a reload), or None. Read first, before any other check: the
    group may have moved on or finished since, and the answer is the original ack all the same."""
    if not ref:
        return None
    stored = SubmissionReceipt.objects.filter(participant_id=participant.pk, ref=ref) \
        .values_list("kind", "round").first()
    if stored is None:
        return None
    if stored != (kind, round):
        raise SubmissionError("invalid", gettext_lazy("That reference was already used for another answer."))
    return SubmitResult(created=True, replayed=True)


def _claim_ref(participant: Participant, ref: str | None, kind: str, round: int | None = None) -> SubmitResult | None:
    """Store the receipt in the submission's own transaction (rolled back with it if the submission fails). A
    second submission with the same ref while the first is still in flight (a reload, a reconnect to another
    process) waits here on the unique index until the first ends; if that one was stored, it gets its result."""
    if not ref:
        return None
    try:
        with transaction.atomic():
            SubmissionReceipt.objects.create(participant_id=participant.pk, ref=ref, group_id=participant.group_id,
                                             kind=kind, round=round)
    except IntegrityError:
        replay = submission_replay(participant=participant, ref=ref, kind=kind, round=round)
        if replay is None:  # pragma: no cover - the conflicting row was committed, so it is visible now
            raise
        return replay
    return None


def _release_ref(participant: Participant, ref: str | None) -> None:
    """A resubmission of an answer already stored under another ref stores nothing: nor its receipt."""
    if ref:
        SubmissionReceipt.objects.filter(participant_id=participant.pk, ref=ref).delete()


def _locked_group(participant: Participant) -> Group:
    """The member's group, row-locked for the rest of the transaction. Every check of what is already stored
    comes after this lock: two submissions of one member at once (a double click, two tabs, a retry after a
    reconnect) would both pass a check made before it, and the second would then hit the unique constraint."""
    if participant.group_id is None:
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
        if replay := submission_replay(participant=participant, ref=ref, kind="opinion"):
            return replay
        if not by_bot:
            _ensure_may_write(participant)
        # Before the group lock: a second copy with the same ref waits on the receipt's unique index and
        # then gets the first one's result.
        if replay := _claim_ref(participant, ref, "opinion"):
            return replay
        # Under the lock: one read of the members (and whether this one answered before), then the insert, the
        # event, the version bump (tests/deliberation/test_lean_path.py counts the statements).
        group = _locked_group(participant)
        read = group_members(group, now, answered=Opinion.objects.filter(group=group))
        if _answered(read, participant):
            _release_ref(participant, ref)
            return _text_resubmitted(Opinion.objects.get(participant=participant, group=group), text,
                                     what="opinion", max_chars=group.study.max_text_chars, min_words=3)
        _ensure_phase(group, Phase.OPINION)
        text = clean_text(text, max_chars=group.study.max_text_chars, what="opinion", min_words=3)
        Opinion.objects.create(group=group, participant=participant, text=text,
                               response_seconds=_response_seconds(group, now), by_bot=by_bot)
        log_event(group, "opinion_submitted", participant)
        _apply(group, flow.Submitted(participant.pk), now, read=read, stored_by=participant.pk)
    return SubmitResult(created=True, stored=text)


def critique_submit(*, participant: Participant, text: str, by_bot: bool = False,
                    ref: str | None = None) -> SubmitResult:
    now = timezone.now()
    with transaction.atomic():
        if replay := submission_replay(participant=participant, ref=ref, kind="critique"):
            return replay
        if not by_bot:
            _ensure_may_write(participant)
        # Before the group lock: a second copy with the same ref waits on the receipt's unique index and
        # then gets the first one's result.
        if replay := _claim_ref(participant, ref, "critique"):
            return replay
        group = _locked_group(participant)
        read = group_members(group, now, answered=Critique.objects.filter(group=group))
        if _answered(read, participant):
            _release_ref(participant, ref)
            return _text_resubmitted(Critique.objects.get(participant=participant, group=group), text,
                                     what="critique", max_chars=group.study.max_text_chars, min_words=1)
        _ensure_phase(group, Phase.CRITIQUE)
        text = clean_text(text, max_chars=group.study.max_text_chars, what="critique", min_words=1)
        Critique.objects.create(group=group, participant=participant, candidate_id=group.winner_round1_id,
                                text=text, response_seconds=_response_seconds(group, now), by_bot=by_bot)
        log_event(group, "critique_submitted", participant)
        _apply(group, flow.Submitted(participant.pk), now, read=read, stored_by=participant.pk)
    return SubmitResult(created=True, stored=text)


def _validate_ratings(group: Group, round_: int, ratings: dict[int, dict], ranking: list[int], *,
                      complete: bool) -> dict[int, Candidate]:
    candidates = {c.pk: c for c in Candidate.objects.filter(group=group, round=round_, shown=True)}
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
        if replay := submission_replay(participant=participant, ref=ref, kind="ratings", round=round):
            return replay
        if not by_bot:
            _ensure_may_write(participant)
        # Before the group lock: a second copy with the same ref waits on the receipt's unique index and
        # then gets the first one's result.
        if replay := _claim_ref(participant, ref, "ratings", round):
            return replay
        group = _locked_group(participant)
        read = group_members(group, now, answered=Rating.objects.filter(group=group, round=round))
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
        candidates = _validate_ratings(group, round, ratings, ranking, complete=True)
        seconds = _response_seconds(group, now)
        Rating.objects.bulk_create([
            Rating(participant=participant, candidate_id=cid, group=group, round=round,
                   agreement=values["agreement"], quality=values["quality"], rank=rank_of[cid],
                   response_seconds=seconds, by_bot=by_bot)
            for cid, values in ratings.items()
        ])
        log_event(group, "ratings_submitted", participant, round=round, ranking=ranking)
        _apply(group, flow.Submitted(participant.pk), now, read=read, stored_by=participant.pk,
               candidates=list(candidates.values()))
    return SubmitResult(created=True, stored=_ratings_view(ratings, rank_of))


def draft_save(*, participant: Participant, phase: str, payload: dict) -> bool:
    """Keep what a member has typed so far; silently ignored (False) once the phase has moved on, refused once
    they are no longer in the group or their seat was taken over.

    Without the group's row lock: one upsert (INSERT ... ON CONFLICT DO UPDATE), then the group's phase read
    under ``FOR KEY SHARE``, which no submission and no other draft waits for. It waits only for a transition
    holding the group ``FOR UPDATE`` (one that stores drafts at a deadline, ``store_timed_out_drafts``): either
    that transition read this draft (it committed first), or this read sees the new phase and the draft is
    rolled back and reported as not saved. So a draft acknowledged as saved is never older than what a
    deadline stores. The consumer writes a socket's drafts at most every ``DRAFT_WRITE_INTERVAL_SECONDS``."""
    if phase not in {p.value for p in flow.INPUT_PHASES}:
        return False
    with transaction.atomic():
        _ensure_may_write(participant)
        Draft.objects.bulk_create([Draft(group_id=participant.group_id, participant=participant, phase=phase,
                                         payload=payload, updated_at=timezone.now())],
                                  update_conflicts=True, unique_fields=["group", "participant", "phase"],
                                  update_fields=["payload", "updated_at"])
        if _group_phase_key_shared(participant.group_id) != phase:
            transaction.set_rollback(True)
            return False
    return True


def _group_phase_key_shared(group_id: int) -> str | None:
    if connection.vendor != "postgresql":  # the demo's SQLite has one writer at a time
        return Group.objects.filter(pk=group_id).values_list("phase", flat=True).first()
    with connection.cursor() as cursor:
        # FOR KEY SHARE (Django's select_for_update has no such mode): waits only for a transition's FOR UPDATE.
        cursor.execute("SELECT phase FROM deliberation_group WHERE id = %s FOR KEY SHARE", [group_id])
        row = cursor.fetchone()
    return row[0] if row else None


def store_timed_out_drafts(group: Group, phase: Phase, previous: flow.GroupState, now: datetime) -> None:
    """At the end of a phase, store each non-submitter's draft as their answer, flagged by_timeout.

    First the group's lock becomes ``FOR UPDATE`` (a submission holds only ``FOR NO KEY UPDATE``): a draft
    being written now waits for this transaction and is then refused (``draft_save``), so every draft
    acknowledged before is read here.

    Each draft is stored in a savepoint of its own: one the database refuses (a constraint, a value it cannot
    hold) is rolled back alone and logged as ``draft_discarded``; without the savepoint, PostgreSQL would refuse
    every later statement of the transaction, the whole transition would fail, and the group would stall at its
    deadline (every sweep retrying the same draft)."""
    list(Group.objects.select_for_update().filter(pk=group.pk).values_list("pk"))
    seconds = _response_seconds(group, now)
    pending = {m.participant_id for m in previous.members if not m.submitted}
    drafts = Draft.objects.filter(group=group, phase=phase.value, participant_id__in=pending).order_by("pk")
    for draft in drafts:
        try:
            with transaction.atomic():
                _store_draft(group, phase, draft, seconds)
        except (SubmissionError, IntegrityError, DataError, TypeError, ValueError, AttributeError) as exc:
            log_event(group, "draft_discarded", None, participant_id=draft.participant_id, reason=str(exc)[:200])
            continue
        log_event(group, "stored_by_timeout", None, participant_id=draft.participant_id, phase=phase.value)


def _store_draft(group: Group, phase: Phase, draft: Draft, seconds: float) -> None:
    payload = draft.payload if isinstance(draft.payload, dict) else {}
    limit = group.study.max_text_chars
    if phase is Phase.OPINION:
        text = clean_text(str(payload.get("text", ""))[:limit], max_chars=limit, what="opinion")
        Opinion.objects.create(group=group, participant_id=draft.participant_id, text=text,
                               response_seconds=seconds, by_timeout=True)
    elif phase is Phase.CRITIQUE:
        text = clean_text(str(payload.get("text", ""))[:limit], max_chars=limit, what="critique")
        Critique.objects.create(group=group, participant_id=draft.participant_id, text=text,
                                candidate_id=group.winner_round1_id, response_seconds=seconds, by_timeout=True)
    else:
        _store_rating_draft(group, phase, draft, payload, seconds)


def _store_rating_draft(group: Group, phase: Phase, draft: Draft, payload: dict, seconds: float) -> None:
    round_ = flow.round_of(phase)
    ratings = {int(k): v for k, v in (payload.get("ratings") or {}).items() if isinstance(v, dict)}
    ranking = [int(c) for c in payload.get("ranking") or []]
    candidates = _validate_ratings(group, round_, ratings, ranking, complete=False)
    full_ranking = sorted(ranking) == sorted(candidates)
    rank_of = {cid: i + 1 for i, cid in enumerate(ranking)} if full_ranking else {}
    rows = []
    for cid in candidates:
        values = ratings.get(cid, {})
        if values.get("agreement") is None and values.get("quality") is None and cid not in rank_of:
            continue
        rows.append(Rating(participant_id=draft.participant_id, candidate_id=cid, group=group, round=round_,
                           agreement=values.get("agreement"), quality=values.get("quality"),
                           rank=rank_of.get(cid), response_seconds=seconds, by_timeout=True))
    Rating.objects.bulk_create(rows)


# --- winners and finishing ------------------------------------------------------------------
def winner_choose(group: Group, round_: int) -> Candidate | None:
    """The round's winner among the shown model statements by the study's rule over the members' rankings.

    Members' opinions shown as comparators are ranked too but cannot win: each ballot is restricted to the
    model statements, keeping the member's order."""
    candidates = list(Candidate.objects.filter(group=group, round=round_, shown=True,
                                               source=Candidate.Source.MODEL).order_by("index"))
    if not candidates:
        return None
    ids = [c.pk for c in candidates]
    ballots: dict[int, list[tuple[int, int]]] = {}
    for participant_id, candidate_id, rank in Rating.objects.filter(
        group=group, round=round_, rank__isnull=False, candidate_id__in=ids
    ).values_list("participant_id", "candidate_id", "rank"):
        ballots.setdefault(participant_id, []).append((rank, candidate_id))
    rankings = [[cid for _, cid in sorted(b)] for _, b in sorted(ballots.items()) if len(b) == len(ids)]
    if rankings:
        method = group.study.aggregation_method
        result = elect(method, rankings, ids, seed=derive_seed(group.study.generation_seed, group.pk, round_, "winner"))
        winner_id, details = result.winner, {"tied_winners": list(result.tied_winners),
                                             "tie_broken_by": result.tie_broken_by}
    else:  # nobody ranked in time: fall back to mean agreement, then to the first candidate
        means = {cid: [] for cid in ids}
        for cid, agreement in Rating.objects.filter(group=group, round=round_, agreement__isnull=False,
                                                    candidate_id__in=ids).values_list("candidate_id", "agreement"):
            means[cid].append(agreement)
        winner_id = max(ids, key=lambda c: (sum(means[c]) / len(means[c]) if means[c] else 0, -ids.index(c)))
        method, details = "mean_agreement_fallback", {}
    winner = next(c for c in candidates if c.pk == winner_id)
    setattr(group, f"winner_round{round_}", winner)
    group.save(update_fields=[f"winner_round{round_}"])
    log_event(group, "winner_chosen", None, round=round_, candidate_id=winner_id, method=method,
              ballots=len(rankings), **details)
    return winner


def group_finish(group: Group, outcome: str, previous: flow.GroupState, now: datetime) -> None:
    group.outcome = outcome
    group.finished_at = now
    group.save(update_fields=["outcome", "finished_at"])
    study = group.study
    for member in previous.members:
        completed = member.submitted or member.connected
        status = Participant.Status.COMPLETED if completed else Participant.Status.DROPPED
        Participant.objects.filter(pk=member.participant_id, status=Participant.Status.IN_GROUP).update(
            status=status, completion_code=study.completion_code(status.value), finished_at=now)
    log_event(group, "group_finished", None, outcome=outcome)
    realtime.push_after_commit(participants=[m.participant_id for m in previous.members])
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
