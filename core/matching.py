"""Lobby matching by arrival, pure and Django-free.

Groups form as soon as ``max_size`` connected participants wait; when the oldest waiter
has waited ``timeout_seconds`` and at least ``min_size`` are connected, everyone waiting
(up to ``max_size``) forms a group. Waiters past their timeout who cannot be grouped leave
with the lobby-timeout outcome. Disconnected waiters are never put into a group.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Waiting:
    participant_id: int
    entered_at: datetime
    connected: bool


@dataclass(frozen=True)
class LobbyDecision:
    groups: tuple[tuple[int, ...], ...]
    timed_out: tuple[int, ...]


def match_lobby(
    waiting: list[Waiting], now: datetime, *, min_size: int, max_size: int, timeout_seconds: int
) -> LobbyDecision:
    if not 1 <= min_size <= max_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
    timeout = timedelta(seconds=timeout_seconds)
    queue = sorted(waiting, key=lambda w: (w.entered_at, w.participant_id))
    ready = [w for w in queue if w.connected]
    groups: list[tuple[int, ...]] = []
    while len(ready) >= max_size:
        groups.append(tuple(w.participant_id for w in ready[:max_size]))
        ready = ready[max_size:]
    if len(ready) >= min_size and now - ready[0].entered_at >= timeout:
        groups.append(tuple(w.participant_id for w in ready))
        ready = []
    grouped = {pid for group in groups for pid in group}
    timed_out = tuple(
        w.participant_id for w in queue
        if w.participant_id not in grouped and now - w.entered_at >= timeout
    )
    return LobbyDecision(groups=tuple(groups), timed_out=timed_out)
