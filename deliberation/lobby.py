"""The lobby: people who consented wait here until the study's groups form (by arrival) or they time out.

``participants`` sits below deliberation (docs/architecture.md) and knows nothing of groups: it announces a
consent (``participants.signals.lobby_entered``) or a presence change (``presence_changed``), and the
receivers here (connected in ``DeliberationConfig.ready``) form groups or move a group on.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.dispatch import receiver
from django.utils import timezone

from core import flow
from core.matching import Waiting, match_lobby
from participants.models import Participant, Presence
from participants.signals import lobby_entered, presence_changed

from . import realtime
from .caps import study_close_if_full
from .models import Group, Study
from .selectors import connected_participant_ids
from .services import group_apply, group_create


def lobby_match(*, study_id: int, now: datetime | None = None, announce: bool = False) -> list[Group]:
    """Form groups by arrival and time out lone waiters. Safe to call from any process. When the lobby changed
    (or ``announce``: somebody arrived), the lobby's sockets get the number still waiting with the push, counted
    from the rows read here, so no socket reads the database for it."""
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)  # one matcher per study at a time
        # Taken once the lock is held: a group formed here starts now (its phase_started_at and deadline), not
        # when this matcher began waiting for the lock behind the other arrivals' matchers.
        now = now or timezone.now()
        if study.paused_at is not None:  # paused: no new groups, nobody times out (deliberation/pause.py)
            return []
        waiting_rows = _waiting_that_count(study, now)
        if not waiting_rows:
            return []
        connected = connected_participant_ids([pid for pid, _ in waiting_rows], now)
        decision = match_lobby(
            [Waiting(pid, entered, pid in connected) for pid, entered in waiting_rows], now,
            min_size=study.min_group_size, max_size=study.max_group_size,
            timeout_seconds=study.lobby_timeout_seconds,
        )
        formed = (group_create(study=study, participant_ids=ids, now=now) for ids in decision.groups)
        groups = [group for group in formed if group is not None]  # None: a cap left no room (deliberation/caps.py)
        study_close_if_full(study=study)
        if decision.timed_out:
            Participant.objects.filter(pk__in=decision.timed_out, status=Participant.Status.LOBBY).update(
                status=Participant.Status.LOBBY_TIMEOUT,
                completion_code=study.completion_code("lobby_timeout"), finished_at=now)
            realtime.push_after_commit(participants=decision.timed_out)
        if announce or groups or decision.timed_out:
            # Counted after the groups formed and the timed out left (this transaction's own writes).
            left = Participant.objects.filter(study=study, status=Participant.Status.LOBBY).count()
            realtime.push_after_commit(lobbies={study.pk: left})
    return groups


def _waiting_that_count(study: Study, now: datetime) -> list[tuple[int, datetime]]:
    """The waiters ``match_lobby`` can act on: those with a registered socket (only the connected are grouped)
    and those past the lobby timeout (they leave). Anyone else in the lobby changes nothing, so a lobby full of
    people who consented and have not opened their page yet is not read on every arrival (O(lobby) per
    arrival, O(N^2) as a study fills)."""
    lobby = Participant.objects.filter(study=study, status=Participant.Status.LOBBY)
    overdue = now - timedelta(seconds=study.lobby_timeout_seconds)
    return list(lobby.filter(Q(Exists(Presence.objects.filter(participant_id=OuterRef("pk"))))
                             | Q(lobby_entered_at__lte=overdue))
                .values_list("id", "lobby_entered_at"))


@receiver(lobby_entered, dispatch_uid="deliberation.lobby.on_lobby_entered")
def on_lobby_entered(sender, *, participant: Participant, **kwargs) -> None:
    realtime.push_after_commit(participants=[participant.pk])  # their own page: from the lobby on
    lobby_match(study_id=participant.study_id, announce=True)  # the matcher's clock, not the arrival's (``now``)


@receiver(presence_changed, dispatch_uid="deliberation.lobby.on_presence_changed")
def on_presence_changed(sender, *, participant: Participant, **kwargs) -> None:
    if participant.group_id and participant.status == Participant.Status.IN_GROUP:
        group_apply(group_id=participant.group_id, event=flow.PresenceChanged())
    elif participant.status == Participant.Status.LOBBY:
        lobby_match(study_id=participant.study_id)
