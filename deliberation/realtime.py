"""The one place that pushes to websockets.

A push to a group carries the group's shared state (``selectors.group_shared_state``), read
once after the commit by the process that committed: each member's socket turns it into
its participant's snapshot without reading the database (``selectors.PushView``), and reads
the database only when the member's own data may have changed. Pushes to a participant or
a lobby carry nothing: those sockets read a fresh snapshot. A lost push costs nothing: the
client's next ping (or reconnect) repairs it. Pushes are sent only after the transaction
commits, so nobody sees state that could still roll back.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .selectors import read_group_shared_state

logger = logging.getLogger(__name__)

STATE_CHANGED = {"type": "state.changed"}


def group_channel(group_id: int) -> str:
    return f"group_{group_id}"


def participant_channel(participant_id: int) -> str:
    return f"participant_{participant_id}"


def lobby_channel(study_id: int) -> str:
    return f"lobby_{study_id}"


def group_message(group_id: int) -> dict:
    """The push for a group: its shared state, or (if that cannot be read) the bare signal, after which every
    member's socket reads its snapshot from the database."""
    try:
        shared = read_group_shared_state(group_id)
    except Exception:  # the database is the truth; a push is an optimisation
        logger.exception("reading group %s for its push failed", group_id)
        shared = None
    return {**STATE_CHANGED, "group": shared} if shared is not None else STATE_CHANGED


def _send(channel_groups: list[tuple[str, int | None]]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for name, group_id in channel_groups:
        try:
            message = group_message(group_id) if group_id is not None else STATE_CHANGED
            async_to_sync(layer.group_send)(name, message)
        except Exception:  # a push is an optimisation; the snapshot protocol repairs a lost one
            logger.exception("push to %s failed", name)


def push_after_commit(*, groups: Iterable[int] = (), participants: Iterable[int] = (), lobbies: Iterable[int] = ()) -> None:
    names: list[tuple[str, int | None]] = [(group_channel(g), g) for g in dict.fromkeys(groups)]
    names += [(participant_channel(p), None) for p in participants]
    names += [(lobby_channel(s), None) for s in lobbies]
    if names:
        transaction.on_commit(lambda: _send(names))
