"""The pure group state machine: every phase, timeouts, dropouts, forced advances, stale events."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import flow
from core.flow import (
    CandidatesReady,
    ChooseWinner,
    EnqueueGeneration,
    FinishGroup,
    ForceAdvance,
    MemberView,
    Phase,
    PresenceChanged,
    StoreTimedOutDrafts,
    Submitted,
    Tick,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CONFIG = flow.FlowConfig(opinion_seconds=60, rating_seconds=90, critique_seconds=45, final_rating_seconds=30)
NO_CRITIQUE = flow.FlowConfig(60, 90, 45, 30, critique_round=False)


def members(n=3, connected=True):
    return tuple(MemberView(i, connected=connected) for i in range(1, n + 1))


def start(n=3, config=CONFIG):
    return flow.initial_state(members(n), T0, config)


def submit_all(state, now=T0, config=CONFIG):
    transition = None
    for m in state.members:
        transition = flow.advance(state, Submitted(m.participant_id), now, config)
        state = transition.state
        if transition.changed:
            break
    return transition


def test_initial_state_is_opinion_with_deadline():
    state = start()
    assert state.phase is Phase.OPINION
    assert state.deadline == T0 + timedelta(seconds=60)


def test_full_happy_path_with_critique_round():
    state = start()
    t = submit_all(state)
    assert t.state.phase is Phase.GENERATING and t.reason == "all_submitted"
    assert t.effects == (StoreTimedOutDrafts(Phase.OPINION), EnqueueGeneration(1))
    assert t.state.deadline is None
    t = flow.advance(t.state, CandidatesReady(1), T0, CONFIG)
    assert t.state.phase is Phase.RATING and t.state.deadline == T0 + timedelta(seconds=90)
    t = submit_all(t.state)
    assert t.state.phase is Phase.CRITIQUE
    assert t.effects == (StoreTimedOutDrafts(Phase.RATING), ChooseWinner(1))
    t = submit_all(t.state)
    assert t.state.phase is Phase.REVISING and EnqueueGeneration(2) in t.effects
    t = flow.advance(t.state, CandidatesReady(2), T0, CONFIG)
    assert t.state.phase is Phase.FINAL_RATING and t.state.deadline == T0 + timedelta(seconds=30)
    t = submit_all(t.state)
    assert t.state.phase is Phase.DONE
    assert t.effects == (StoreTimedOutDrafts(Phase.FINAL_RATING), ChooseWinner(2), FinishGroup("completed"))


def test_without_critique_round_rating_ends_the_group():
    state = flow.initial_state(members(), T0, NO_CRITIQUE)
    t = submit_all(state, config=NO_CRITIQUE)
    t = flow.advance(t.state, CandidatesReady(1), T0, NO_CRITIQUE)
    t = submit_all(t.state, config=NO_CRITIQUE)
    assert t.state.phase is Phase.DONE
    assert t.effects == (StoreTimedOutDrafts(Phase.RATING), ChooseWinner(1), FinishGroup("completed"))


def test_partial_submissions_wait_until_deadline():
    state = start()
    t = flow.advance(state, Submitted(1), T0, CONFIG)
    assert not t.changed and t.state.phase is Phase.OPINION
    t = flow.advance(t.state, Tick(), T0 + timedelta(seconds=59), CONFIG)
    assert not t.changed
    t = flow.advance(t.state, Tick(), T0 + timedelta(seconds=60), CONFIG)
    assert t.changed and t.reason == "deadline" and t.state.phase is Phase.GENERATING


def test_dropout_does_not_block_the_group():
    state = start()
    state = flow.advance(state, Submitted(1), T0, CONFIG).state
    state = flow.advance(state, Submitted(2), T0, CONFIG).state
    dropped = flow.GroupState(state.phase, state.deadline,
                              tuple(m if m.participant_id != 3 else MemberView(3, connected=False)
                                    for m in state.members))
    t = flow.advance(dropped, PresenceChanged(), T0 + timedelta(seconds=5), CONFIG)
    assert t.changed and t.reason == "all_submitted" and t.state.phase is Phase.GENERATING


def test_nobody_connected_waits_for_the_deadline():
    state = flow.initial_state(members(connected=False), T0, CONFIG)
    assert not flow.advance(state, PresenceChanged(), T0, CONFIG).changed
    t = flow.advance(state, Tick(), T0 + timedelta(seconds=61), CONFIG)
    assert t.state.phase is Phase.DONE and FinishGroup("no_opinions") in t.effects


def test_opinion_deadline_with_only_drafts_still_generates():
    state = flow.initial_state((MemberView(1, True, has_draft=True), MemberView(2, True)), T0, CONFIG)
    t = flow.advance(state, Tick(), T0 + timedelta(seconds=60), CONFIG)
    assert t.state.phase is Phase.GENERATING


def test_submission_outside_input_phase_or_from_stranger_is_invalid():
    state = submit_all(start()).state  # GENERATING
    with pytest.raises(flow.InvalidEvent):
        flow.advance(state, Submitted(1), T0, CONFIG)
    with pytest.raises(flow.InvalidEvent):
        flow.advance(start(), Submitted(99), T0, CONFIG)


def test_stale_or_duplicate_candidates_ready_is_a_no_op():
    state = start()
    assert not flow.advance(state, CandidatesReady(1), T0, CONFIG).changed
    rating = flow.advance(submit_all(state).state, CandidatesReady(1), T0, CONFIG).state
    assert not flow.advance(rating, CandidatesReady(1), T0, CONFIG).changed
    assert not flow.advance(rating, CandidatesReady(2), T0, CONFIG).changed


def test_force_advance_ends_input_phases_and_retries_generation():
    t = flow.advance(start(), ForceAdvance(), T0, CONFIG)
    assert t.reason == "forced" and t.state.phase is Phase.DONE  # nobody wrote anything
    generating = submit_all(start()).state
    t = flow.advance(generating, ForceAdvance(), T0, CONFIG)
    assert not t.changed and t.effects == (EnqueueGeneration(1),)


def test_done_is_terminal():
    state = flow.GroupState(Phase.DONE, None, members())
    for event in (Tick(), PresenceChanged(), ForceAdvance(), CandidatesReady(1)):
        assert not flow.advance(state, event, T0, CONFIG).changed
    with pytest.raises(flow.InvalidEvent):
        flow.advance(state, Submitted(1), T0, CONFIG)


def test_entering_a_phase_clears_submitted_flags():
    t = submit_all(start())
    assert not any(m.submitted for m in t.state.members)


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("event", [Tick(), PresenceChanged(), ForceAdvance(), CandidatesReady(1), CandidatesReady(2)])
def test_every_phase_event_pair_is_handled(phase, event):
    state = flow.GroupState(phase, T0, members())
    t = flow.advance(state, event, T0 + timedelta(hours=1), CONFIG)
    assert isinstance(t.state.phase, Phase)
    if t.changed:
        assert t.state.phase is not phase


EVENTS = st.one_of(
    st.builds(Submitted, st.integers(1, 4)),
    st.just(Tick()), st.just(PresenceChanged()), st.just(ForceAdvance()),
    st.builds(CandidatesReady, st.sampled_from([1, 2])),
)
ORDER = [Phase.OPINION, Phase.GENERATING, Phase.RATING, Phase.CRITIQUE, Phase.REVISING, Phase.FINAL_RATING, Phase.DONE]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(EVENTS, st.integers(0, 200), st.booleans()), max_size=60), st.booleans())
def test_random_event_sequences_only_move_forward(steps, critique_round):
    """Whatever arrives in whatever order: phases only move forward, one step at a time,
    deadlines exist exactly in input phases, and generation is requested exactly on entering it."""
    config = flow.FlowConfig(60, 90, 45, 30, critique_round=critique_round)
    state = flow.initial_state(members(4), T0, config)
    now = T0
    for event, seconds, flip_presence in steps:
        now = now + timedelta(seconds=seconds)
        if flip_presence:
            first = state.members[0]
            state = flow.GroupState(state.phase, state.deadline,
                                    (MemberView(first.participant_id, not first.connected, first.submitted),
                                     *state.members[1:]))
        try:
            t = flow.advance(state, event, now, config)
        except flow.InvalidEvent:
            assert isinstance(event, Submitted)
            continue
        if t.changed:
            before, after = ORDER.index(state.phase), ORDER.index(t.state.phase)
            assert after > before
            if t.state.phase is not Phase.DONE:
                skipped = ORDER[before + 1:after]
                assert skipped in ([], [Phase.CRITIQUE, Phase.REVISING, Phase.FINAL_RATING]) or not critique_round
            assert (t.state.deadline is not None) == (t.state.phase in flow.INPUT_PHASES)
            enq = [e for e in t.effects if isinstance(e, EnqueueGeneration)]
            assert bool(enq) == (t.state.phase in (Phase.GENERATING, Phase.REVISING))
        state = t.state


def test_all_submitted_order_does_not_matter():
    for order in itertools.permutations([1, 2, 3]):
        state = start()
        for i, pid in enumerate(order):
            t = flow.advance(state, Submitted(pid), T0, CONFIG)
            assert t.changed == (i == 2)
            state = t.state
