"""The one place that pushes to websockets.

A push to a group carries the group's shared state, built by the service inside its transaction from what it
read under the group's lock (``selectors.shared_state_from``; ``states=``), or, for the few callers that pass
only an id, read once after the commit. Each member's socket turns it into its participant's snapshot without
reading the database (``selectors.PushView``), and reads the database only when the member's own data may have
changed. A push to a lobby carries the number waiting (``lobbies={study_id: waiting}``), so an arrival costs
the lobby's sockets no read. Pushes to a participant carry nothing, and those sockets read a fresh snapshot,
except after a group's finish: that push names the group state that shows it (``covered_by``), sent just before,
and a socket that has it reads nothing; and when a group forms: that push carries the new group's state
(``joined``), which the members' lobby sockets show without a read. A lost
push costs nothing: the client's next ping (or reconnect) repairs it. Pushes are sent only after the
transaction commits, so nobody sees state that could still roll back.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .selectors import read_group_shared_state, remember_shared_state

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


def lobby_message(waiting: int) -> dict:
    return {**STATE_CHANGED, "lobby": {"waiting": waiting}}


def _send(channel_groups: list[tuple[str, int | dict | None]]) -> None:
    layer = get_channel_layer()
    for name, what in channel_groups:
        try:
            if isinstance(what, dict):  # a state built in the transaction, now committed (or a lobby count, a hint)
                if what.get("group") is not None:
                    remember_shared_state(what["group"])
                message = what
            else:
                message = group_message(what) if what is not None else STATE_CHANGED
            if layer is not None:
                async_to_sync(layer.group_send)(name, message)
        except Exception:  # a push is an optimisation; the snapshot protocol repairs a lost one
            logger.exception("push to %s failed", name)


def push_after_commit(*, groups: Iterable[int] = (), states: Iterable[dict] = (), participants: Iterable[int] = (),
                      lobbies: Iterable[int] | dict[int, int] = (), covered_by: tuple[int, int] | None = None,
                      joined: dict | None = None) -> None:
    """After the commit, push to ``groups`` (read then), to the groups of ``states`` (shared states built in the
    transaction; the newest per group wins), to ``participants`` and to ``lobbies`` (study id -> number waiting;
    a plain id: the sockets read it). ``covered_by=(group id, version)``: the participants' change is in that
    group's pushed state, sent before this (an earlier ``push_after_commit`` of the same transaction), so a
    socket that has that state needs no read. ``joined``: the state of the group the participants were just put
    in (built in the transaction), which their lobby sockets show without a read."""
    by_group = {shared["id"]: {**STATE_CHANGED, "group": shared} for shared in states}
    names: list[tuple[str, int | dict | None]] = [(group_channel(g), g) for g in dict.fromkeys(groups)
                                                  if g not in by_group]
    names += [(group_channel(g), message) for g, message in by_group.items()]
    hint = {**STATE_CHANGED, "covered_by": list(covered_by)} if covered_by is not None else None
    if joined is not None:
        hint = {**STATE_CHANGED, "group": joined}
    names += [(participant_channel(p), hint) for p in participants]
    if isinstance(lobbies, dict):
        names += [(lobby_channel(s), lobby_message(n)) for s, n in lobbies.items()]
    else:
        names += [(lobby_channel(s), None) for s in lobbies]
    if names:
        transaction.on_commit(lambda: _send(names))
