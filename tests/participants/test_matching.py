"""Lobby matching by arrival (pure)."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.matching import Waiting, match_lobby

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def waiting(n, connected=True, start=0):
    return [Waiting(i, T0 + timedelta(seconds=start + i), connected) for i in range(1, n + 1)]


def test_group_forms_when_max_size_reached_in_arrival_order():
    decision = match_lobby(waiting(7), T0 + timedelta(seconds=10), min_size=3, max_size=5, timeout_seconds=300)
    assert decision.groups == ((1, 2, 3, 4, 5),)
    assert decision.timed_out == ()


def test_below_max_waits_until_timeout_then_groups_if_min_reached():
    early = match_lobby(waiting(3), T0 + timedelta(seconds=100), min_size=3, max_size=5, timeout_seconds=300)
    assert early.groups == () and early.timed_out == ()
    late = match_lobby(waiting(3), T0 + timedelta(seconds=301), min_size=3, max_size=5, timeout_seconds=300)
    assert late.groups == ((1, 2, 3),)


def test_below_min_at_timeout_exits_with_lobby_timeout():
    decision = match_lobby(waiting(2), T0 + timedelta(seconds=302), min_size=3, max_size=5, timeout_seconds=300)
    assert decision.groups == () and decision.timed_out == (1, 2)


def test_only_those_past_their_own_timeout_leave():
    decision = match_lobby(waiting(2), T0 + timedelta(seconds=301), min_size=3, max_size=5, timeout_seconds=300)
    assert decision.timed_out == (1,)


def test_disconnected_waiters_are_never_grouped():
    people = waiting(5)
    people[0] = Waiting(1, people[0].entered_at, connected=False)
    decision = match_lobby(people, T0 + timedelta(seconds=10), min_size=3, max_size=5, timeout_seconds=300)
    assert decision.groups == ()
    people.append(Waiting(9, T0 + timedelta(seconds=9), True))
    decision = match_lobby(people, T0 + timedelta(seconds=10), min_size=3, max_size=5, timeout_seconds=300)
    assert decision.groups == ((2, 3, 4, 5, 9),)


def test_invalid_sizes_are_rejected():
    with pytest.raises(ValueError):
        match_lobby([], T0, min_size=4, max_size=3, timeout_seconds=1)


@given(st.integers(0, 40), st.integers(1, 5), st.integers(0, 4), st.integers(0, 600))
def test_no_one_is_grouped_twice_and_groups_respect_sizes(n, min_size, extra, elapsed):
    max_size = min_size + extra
    decision = match_lobby(waiting(n), T0 + timedelta(seconds=elapsed), min_size=min_size, max_size=max_size,
                           timeout_seconds=300)
    seen = [pid for group in decision.groups for pid in group]
    assert len(seen) == len(set(seen))
    assert not set(seen) & set(decision.timed_out)
    assert all(min_size <= len(g) <= max_size for g in decision.groups)
