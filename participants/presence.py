"""Liveness of open websockets: who pinged when, without a PostgreSQL write per ping.

The ``Presence`` table stays the register of open sockets (a row is written on connect and deleted on
disconnect); how recently each socket pinged lives in a *liveness store*:

- ``RedisLiveness`` (whenever ``PRESENCE_REDIS_URL`` is set): two sorted sets, the last ping per socket and per
  participant, and a marker key holding the moment since which the store has seen every ping. A ping is one
  pipelined round trip; reads are one more.
- ``DatabaseLiveness`` (the demo, which has no Redis): a ping refreshes the row's ``last_seen``, as before.

A socket counts as live while ``max(row.last_seen, last ping in the store)`` is within
``PRESENCE_TIMEOUT_SECONDS``. The store can be wrong in one direction only, and the readers guard it: when
Redis is unreachable, or its history is younger than the timeout (it restarted and lost its data, or was
flushed), absence of a ping proves nothing, so every socket that still has a row counts as live
(``Seen.complete_for``). Nobody is marked gone, nor taken over by a bot, because Redis was down; a socket
that really closed deleted its row, which needs no Redis.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings

logger = logging.getLogger(__name__)

CHANNELS_KEY = "presence:channels"  # sorted set: channel name -> unix time of its last ping
PARTICIPANTS_KEY = "presence:participants"  # sorted set: participant id -> unix time of their last ping
SINCE_KEY = "presence:since"  # unix time since which the store holds every ping (set when first written)


@dataclass(frozen=True)
class Seen:
    """Last pings by key (unix seconds), and since when the store has seen every ping (None: unreachable)."""

    scores: dict = field(default_factory=dict)
    covers_since: float | None = -math.inf

    def complete_for(self, horizon: float) -> bool:
        """Whether a missing or old ping within ``[horizon, now]`` means the socket really went quiet."""
        return self.covers_since is not None and self.covers_since <= horizon


UNKNOWN = Seen(covers_since=None)


class DatabaseLiveness:
    """No Redis (the demo): the ``Presence`` row's ``last_seen`` is the only record, refreshed by each ping."""

    writes_database = True

    def touch(self, *, participant_id: int, channel_name: str, now: datetime) -> bool:
        """Record a ping; False when the socket has no row (swept while it slept): the caller registers it."""
        from .models import Presence

        return bool(Presence.objects.filter(channel_name=channel_name).update(last_seen=now))

    def participants_seen(self, participant_ids: Iterable[int]) -> Seen:
        return Seen()

    def channels_seen(self, channel_names: Iterable[str]) -> Seen:
        return Seen()

    def forget(self, channel_names: Iterable[str]) -> None:
        pass

    def prune(self, before: float) -> None:
        pass


class RedisLiveness:
    """Pings in Redis. Every call fails fast (short socket timeouts) and, after a failure, is skipped for
    ``retry_seconds`` so that an outage costs the sockets no waiting; failures read as ``UNKNOWN``."""

    writes_database = False

    def __init__(self, url: str, *, timeout: float = 0.5, retry_seconds: float = 1.0):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries (redis-py's default retries 3 times with up to 10 s of backoff): a failure reads as UNKNOWN.
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                           retry=Retry(NoBackoff(), 0))
        self.retry_seconds = retry_seconds
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._errors = (redis.RedisError, OSError)

    def _run(self, build):
        """Run a pipeline built by ``build``; None if Redis is (or was just) unreachable."""
        if time.monotonic() < self._down_until:
            return None
        try:
            pipe = self.client.pipeline(transaction=False)
            build(pipe)
            return pipe.execute()
        except self._errors as exc:
            with self._lock:
                self._down_until = time.monotonic() + self.retry_seconds
            logger.warning("presence store unreachable (%s); sockets with a row count as present", exc)
            return None

    def touch(self, *, participant_id: int, channel_name: str, now: datetime) -> bool:
        self.record(participant_id=participant_id, channel_name=channel_name, now=now)
        return True  # the row's existence is checked by the caller's read (services.presence_ping)

    def record(self, *, participant_id: int, channel_name: str, now: datetime) -> bool:
        """Record a ping; False if Redis is (or was just) unreachable."""
        stamp = now.timestamp()

        def build(pipe):
            pipe.set(SINCE_KEY, stamp, nx=True)
            pipe.zadd(CHANNELS_KEY, {channel_name: stamp}, gt=True)
            pipe.zadd(PARTICIPANTS_KEY, {str(participant_id): stamp}, gt=True)

        return self._run(build) is not None

    def _seen(self, key: str, members: list[str]) -> Seen:
        if not members:
            return Seen()
        now = time.time()

        def build(pipe):
            pipe.set(SINCE_KEY, now, nx=True)  # a store that lost its data starts its history now
            pipe.get(SINCE_KEY)
            pipe.zmscore(key, members)

        result = self._run(build)
        if result is None:
            return UNKNOWN
        _, since, scores = result
        return Seen(scores={m: s for m, s in zip(members, scores) if s is not None},
                    covers_since=float(since) if since is not None else now)

    def participants_seen(self, participant_ids: Iterable[int]) -> Seen:
        seen = self._seen(PARTICIPANTS_KEY, [str(pid) for pid in participant_ids])
        return Seen({int(k): v for k, v in seen.scores.items()}, seen.covers_since)

    def channels_seen(self, channel_names: Iterable[str]) -> Seen:
        return self._seen(CHANNELS_KEY, list(channel_names))

    def forget(self, channel_names: Iterable[str]) -> None:
        names = list(channel_names)
        if names:
            self._run(lambda pipe: pipe.zrem(CHANNELS_KEY, *names))

    def prune(self, before: float) -> None:
        """Drop pings older than ``before`` (sockets long gone); the sweeper calls it."""
        def build(pipe):
            pipe.zremrangebyscore(CHANNELS_KEY, "-inf", before)
            pipe.zremrangebyscore(PARTICIPANTS_KEY, "-inf", before)

        self._run(build)


_store: DatabaseLiveness | RedisLiveness | None = None
_store_url: str | None = None
_store_lock = threading.Lock()


def liveness_store() -> DatabaseLiveness | RedisLiveness:
    """The process's store, chosen by ``settings.PRESENCE_REDIS_URL`` (rebuilt if the setting changes)."""
    global _store, _store_url
    url = settings.PRESENCE_REDIS_URL
    with _store_lock:
        if _store is None or _store_url != url:
            _store = RedisLiveness(url, timeout=settings.PRESENCE_REDIS_TIMEOUT_SECONDS) if url \
                else DatabaseLiveness()
            _store_url = url
        return _store


def live_participants(row_seen: dict[int, datetime | None], now: datetime) -> set[int]:
    """Of participants mapped to the newest ``last_seen`` of their ``Presence`` rows (None: no row), those
    connected at ``now``. The store is asked only about rows too old by themselves."""
    horizon = now.timestamp() - settings.PRESENCE_TIMEOUT_SECONDS
    with_rows = {pid: seen for pid, seen in row_seen.items() if seen is not None}
    live = {pid for pid, seen in with_rows.items() if seen.timestamp() >= horizon}
    rest = [pid for pid in with_rows if pid not in live]
    if not rest:
        return live
    seen = liveness_store().participants_seen(rest)
    if not seen.complete_for(horizon):
        return set(with_rows)  # the store cannot tell: whoever still has a socket counts as present
    return live | {pid for pid in rest if seen.scores.get(pid, -math.inf) >= horizon}
