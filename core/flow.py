"""The group session state machine, pure and Django-free.

``advance(state, event, now, config)`` returns the next state and the effects the
service layer must carry out (enqueue generation, store timed-out drafts, choose a
winner, finish the group). Services apply it under a row lock on the group, so two
processes can never advance the same group twice; the sweeper feeds it ``Tick``.

Phases of one group::

    OPINION -> GENERATING -> RATING -> CRITIQUE -> REVISING -> FINAL_RATING -> DONE
                                     \\-> DONE (when the study has no critique round)

An input phase (opinion, rating, critique, final rating) ends when every connected
member has submitted (and at least one member is connected), at its deadline, or when
an experimenter forces it. A member who drops out therefore never blocks the group.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum


class Phase(StrEnum):
    OPINION = "opinion"
    GENERATING = "generating"
    RATING = "rating"
    CRITIQUE = "critique"
    REVISING = "revising"
    FINAL_RATING = "final_rating"
    DONE = "done"


INPUT_PHASES = frozenset({Phase.OPINION, Phase.RATING, Phase.CRITIQUE, Phase.FINAL_RATING})
GENERATION_PHASES = {Phase.GENERATING: 1, Phase.REVISING: 2}


def round_of(phase: Phase) -> int:
    """Round 1 writes and rates the first statements; round 2 is the revision."""
    return 2 if phase in (Phase.REVISING, Phase.FINAL_RATING) else 1


@dataclass(frozen=True)
class FlowConfig:
    opinion_seconds: int
    rating_seconds: int
    critique_seconds: int
    final_rating_seconds: int
    critique_round: bool = True

    def duration(self, phase: Phase) -> int | None:
        return {
            Phase.OPINION: self.opinion_seconds,
            Phase.RATING: self.rating_seconds,
            Phase.CRITIQUE: self.critique_seconds,
            Phase.FINAL_RATING: self.final_rating_seconds,
        }.get(phase)


@dataclass(frozen=True)
class MemberView:
    participant_id: int
    connected: bool
    submitted: bool = False  # submitted in the current phase
    has_draft: bool = False  # an unsent draft that a deadline would store as "by timeout"


@dataclass(frozen=True)
class GroupState:
    phase: Phase
    deadline: datetime | None
    members: tuple[MemberView, ...]

    def member(self, participant_id: int) -> MemberView | None:
        return next((m for m in self.members if m.participant_id == participant_id), None)


# --- events -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Submitted:
    participant_id: int


@dataclass(frozen=True)
class PresenceChanged:
    """Somebody connected or disconnected; ``state.members`` already reflects it."""


@dataclass(frozen=True)
class Tick:
    """Time passed (the deadline sweeper)."""


@dataclass(frozen=True)
class CandidatesReady:
    round: int


@dataclass(frozen=True)
class ForceAdvance:
    """An experimenter unsticks the group from the monitor."""


Event = Submitted | PresenceChanged | Tick | CandidatesReady | ForceAdvance


# --- effects ------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreTimedOutDrafts:
    phase: Phase


@dataclass(frozen=True)
class EnqueueGeneration:
    round: int


@dataclass(frozen=True)
class ChooseWinner:
    round: int


@dataclass(frozen=True)
class FinishGroup:
    outcome: str  # "completed" | "no_opinions"


Effect = StoreTimedOutDrafts | EnqueueGeneration | ChooseWinner | FinishGroup


@dataclass(frozen=True)
class Transition:
    state: GroupState
    effects: tuple[Effect, ...] = ()
    reason: str = ""  # why the phase changed: "all_submitted", "deadline", "forced", ...
    changed: bool = field(default=False)


class InvalidEvent(ValueError):
    """The event does not apply to this state (e.g. a submission from a non-member)."""


def initial_state(members: tuple[MemberView, ...], now: datetime, config: FlowConfig) -> GroupState:
    return GroupState(phase=Phase.OPINION, deadline=_deadline(Phase.OPINION, now, config), members=members)


def _deadline(phase: Phase, now: datetime, config: FlowConfig) -> datetime | None:
    seconds = config.duration(phase)
    return None if seconds is None else now + timedelta(seconds=seconds)


def _enter(state: GroupState, phase: Phase, now: datetime, config: FlowConfig) -> GroupState:
    members = tuple(replace(m, submitted=False, has_draft=False) for m in state.members)
    return GroupState(phase=phase, deadline=_deadline(phase, now, config), members=members)


def everyone_connected_submitted(state: GroupState) -> bool:
    connected = [m for m in state.members if m.connected]
    return bool(connected) and all(m.submitted for m in connected)


def _leave_input_phase(state: GroupState, now: datetime, config: FlowConfig, reason: str) -> Transition:
    phase = state.phase
    effects: list[Effect] = [StoreTimedOutDrafts(phase)]
    if phase is Phase.OPINION:
        if not any(m.submitted or m.has_draft for m in state.members):
            return Transition(_enter(state, Phase.DONE, now, config),
                              (*effects, FinishGroup("no_opinions")), reason, True)
        return Transition(_enter(state, Phase.GENERATING, now, config),
                          (*effects, EnqueueGeneration(1)), reason, True)
    if phase is Phase.RATING:
        effects.append(ChooseWinner(1))
        if config.critique_round:
            return Transition(_enter(state, Phase.CRITIQUE, now, config), tuple(effects), reason, True)
        return Transition(_enter(state, Phase.DONE, now, config),
                          (*effects, FinishGroup("completed")), reason, True)
    if phase is Phase.CRITIQUE:
        return Transition(_enter(state, Phase.REVISING, now, config),
                          (*effects, EnqueueGeneration(2)), reason, True)
    if phase is Phase.FINAL_RATING:
        return Transition(_enter(state, Phase.DONE, now, config),
                          (*effects, ChooseWinner(2), FinishGroup("completed")), reason, True)
    raise AssertionError(f"not an input phase: {phase}")


def advance(state: GroupState, event: Event, now: datetime, config: FlowConfig) -> Transition:
    """Apply one event. Never mutates ``state``; unchanged state comes back with ``changed=False``."""
    if state.phase is Phase.DONE:
        if isinstance(event, Submitted):
            raise InvalidEvent("the group has finished")
        return Transition(state)

    if isinstance(event, Submitted):
        if state.phase not in INPUT_PHASES:
            raise InvalidEvent(f"nothing to submit while the group is {state.phase}")
        if state.member(event.participant_id) is None:
            raise InvalidEvent("not a member of this group")
        members = tuple(
            replace(m, submitted=True) if m.participant_id == event.participant_id else m
            for m in state.members
        )
        state = replace(state, members=members)
        if everyone_connected_submitted(state):
            return _leave_input_phase(state, now, config, "all_submitted")
        return Transition(state)

    if isinstance(event, CandidatesReady):
        expected = {1: Phase.GENERATING, 2: Phase.REVISING}[event.round]
        if state.phase is not expected:
            return Transition(state)  # stale or duplicate delivery: idempotent no-op
        next_phase = Phase.RATING if event.round == 1 else Phase.FINAL_RATING
        return Transition(_enter(state, next_phase, now, config), (), "candidates_ready", True)

    if isinstance(event, ForceAdvance):
        if state.phase in INPUT_PHASES:
            return _leave_input_phase(state, now, config, "forced")
        return Transition(state, (EnqueueGeneration(GENERATION_PHASES[state.phase]),), "retry_generation")

    if isinstance(event, (Tick, PresenceChanged)):
        if state.phase not in INPUT_PHASES:
            return Transition(state)
        if state.deadline is not None and now >= state.deadline:
            return _leave_input_phase(state, now, config, "deadline")
        if everyone_connected_submitted(state):
            return _leave_input_phase(state, now, config, "all_submitted")
        return Transition(state)

    raise InvalidEvent(f"unknown event {event!r}")
