"""Token buckets for the participant websocket: Django-free, clock passed in, so tests need no sleeping.

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens per second; a message takes one. A full
bucket lets a short burst through (a reconnect sends the unsent draft, a submission and a ping at once);
a steady stream faster than ``rate`` is refused, with the seconds until the next token is there.

    limiter = SocketLimiter.from_config({"draft": (20, 2.0), "ping": (5, 0.2)})
    wait = limiter.take("draft", now=time.monotonic())   # 0.0: go ahead; > 0: refused, retry after ``wait`` s
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    burst: float
    rate: float  # tokens per second
    tokens: float = field(default=-1.0)
    updated: float | None = None

    def __post_init__(self) -> None:
        if self.burst < 1 or self.rate <= 0:
            raise ValueError(f"a bucket needs burst >= 1 and rate > 0, not burst={self.burst}, rate={self.rate}")
        if self.tokens < 0:
            self.tokens = float(self.burst)

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens if there are enough (return 0.0), else take none and return the seconds until
        there will be. ``now`` is any monotonic clock in seconds; a clock going backwards adds nothing."""
        if self.updated is not None and now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now if self.updated is None else max(now, self.updated)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


@dataclass
class SocketLimiter:
    """One bucket per kind of message on one socket; kinds without a bucket are not limited."""

    buckets: dict[str, TokenBucket]

    @classmethod
    def from_config(cls, config: Mapping[str, tuple[float, float]]) -> SocketLimiter:
        return cls({kind: TokenBucket(burst=burst, rate=rate) for kind, (burst, rate) in config.items()})

    def take(self, kind: str, now: float) -> float:
        bucket = self.buckets.get(kind)
        return 0.0 if bucket is None else bucket.take(now)
