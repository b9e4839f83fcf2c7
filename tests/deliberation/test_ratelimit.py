"""The websocket token buckets (deliberation/ratelimit.py): pure, with a clock passed in."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deliberation.ratelimit import SocketLimiter, TokenBucket


def test_a_full_bucket_lets_a_burst_through_then_refuses_with_the_wait():
    bucket = TokenBucket(burst=3, rate=0.5)
    assert [bucket.take(now=10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(now=10.0) == pytest.approx(2.0)  # one token per 2 s
    assert bucket.take(now=11.0) == pytest.approx(1.0)  # half a token came back meanwhile
    assert bucket.take(now=12.0) == 0.0
    assert bucket.take(now=12.0) > 0


def test_refills_at_the_rate_and_never_above_the_burst():
    bucket = TokenBucket(burst=2, rate=1.0)
    bucket.take(now=0.0)
    bucket.take(now=0.0)
    assert bucket.take(now=100.0) == 0.0 and bucket.take(now=100.0) == 0.0
    assert bucket.take(now=100.0) > 0  # 100 idle seconds still give at most ``burst`` tokens


def test_a_refused_message_takes_no_token_and_a_clock_going_back_adds_none():
    bucket = TokenBucket(burst=1, rate=1.0)
    assert bucket.take(now=5.0) == 0.0
    for _ in range(10):
        assert bucket.take(now=5.5) == pytest.approx(0.5)
    assert bucket.take(now=6.0) == 0.0  # the refusals did not push the next token further away
    assert bucket.take(now=1.0) > 0  # time going backwards refills nothing


def test_a_bucket_must_allow_one_message():
    with pytest.raises(ValueError):
        TokenBucket(burst=0, rate=1.0)
    with pytest.raises(ValueError):
        TokenBucket(burst=5, rate=0.0)


def test_a_limiter_has_one_bucket_per_kind_and_leaves_other_kinds_alone():
    limiter = SocketLimiter.from_config({"draft": (1, 1.0), "ping": (2, 1.0)})
    assert limiter.take("draft", 0.0) == 0.0 and limiter.take("draft", 0.0) > 0
    assert limiter.take("ping", 0.0) == 0.0  # a separate bucket: drafts did not use it up
    assert all(limiter.take("submit_opinion", 0.0) == 0.0 for _ in range(100))


@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=200),
       st.integers(min_value=1, max_value=10), st.floats(min_value=0.1, max_value=10))
def test_never_more_than_burst_plus_rate_times_elapsed(gaps, burst, rate):
    bucket = TokenBucket(burst=burst, rate=rate)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        allowed += bucket.take(now) == 0.0
    assert allowed <= burst + rate * now + 1e-6
