"""The one place that pushes to websockets.

Pushes carry no state: they tell consumers that something committed, and each consumer
sends its participant a fresh snapshot read from the database. A lost push therefore
costs nothing: the client's next ping (or reconnect) repairs it. Pushes are sent only
after the transaction commits, so nobody sees state that could still roll back.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

STATE_CHANGED = {"type": "state.changed"}


def group_channel(group_id: int) -> str:
    return f"group_{group_id}"


def participant_channel(participant_id: int) -> str:
    return f"participant_{participant_id}"


def lobby_channel(study_id: int) -> str:
    return f"lobby_{study_id}"


def _send(channel_groups: list[str]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for name in channel_groups:
        try:
            async_to_sync(layer.group_send)(name, STATE_CHANGED)
        except Exception:  # a push is an optimisation; the snapshot protocol repairs a lost one
            logger.exception("push to %s failed", name)


def push_after_commit(*, groups: Iterable[int] = (), participants: Iterable[int] = (), lobbies: Iterable[int] = ()) -> None:
    names = [group_channel(g) for g in groups]
    names += [participant_channel(p) for p in participants]
    names += [lobby_channel(s) for s in lobbies]
    if names:
        transaction.on_commit(lambda: _send(names))
