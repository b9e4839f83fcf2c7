"""Withdrawal: a participant leaves the study and takes their identifying data with them.

The row is never deleted (the append-only group event log names it). In one transaction: the status becomes
``withdrawn`` (``withdrawn_at``), the recruitment ids, URL parameters and browser string are removed, a
``ParticipantEvent`` records it, their open sockets are forgotten, and ``signals.participant_withdrawn`` lets
``deliberation.withdrawal`` blank their texts when the study's policy says so and let their group continue.
"""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from . import signals
from .models import Participant, ParticipantEvent, Presence


def participant_withdraw(*, participant: Participant) -> bool:
    """Withdraw ``participant``; False when they had withdrawn already (nothing changes)."""
    now = timezone.now()
    with transaction.atomic():
        participant = Participant.objects.select_for_update().select_related("study").get(pk=participant.pk)
        if participant.status == Participant.Status.WITHDRAWN:
            return False
        previous = participant.status
        policy = participant.study.withdrawal_policy
        participant.status = Participant.Status.WITHDRAWN
        participant.withdrawn_at = now
        participant.finished_at = participant.finished_at or now
        participant.recruitment_id = None
        participant.recruitment_study_id = participant.recruitment_session_id = participant.user_agent = ""
        participant.url_params = {}
        participant.save(update_fields=["status", "withdrawn_at", "finished_at", "recruitment_id",
                                        "recruitment_study_id", "recruitment_session_id", "user_agent",
                                        "url_params"])
        Presence.objects.filter(participant=participant).delete()
        ParticipantEvent.objects.create(participant=participant, kind="withdrawn",
                                        payload={"previous_status": previous, "policy": policy,
                                                 "group_id": participant.group_id})
        signals.participant_withdrawn.send(sender=Participant, participant=participant, previous_status=previous,
                                           policy=policy, now=now)
    return True
