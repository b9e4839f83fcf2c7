"""Participant writes: join from a link, consent, lobby matching, presence, lobby timeouts."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from deliberation import flow, realtime
from deliberation.models import Group, Study
from deliberation.services import SubmissionError, group_apply, group_create

from .matching import Waiting, match_lobby
from .models import Participant, Presence

logger = logging.getLogger(__name__)

RECRUITMENT_PARAMS = {"PROLIFIC_PID": "recruitment_id", "STUDY_ID": "recruitment_study_id",
                      "SESSION_ID": "recruitment_session_id"}
MAX_PARAM_CHARS = 128


def _clean_params(params: dict[str, str]) -> dict[str, str]:
    """Keep every URL parameter (bounded), so nothing a recruiter appended is lost."""
    kept = {}
    for key, value in list(params.items())[:50]:
        kept[str(key)[:64]] = str(value)[:MAX_PARAM_CHARS]
    return kept


def participant_join(*, study: Study, params: dict[str, str], user_agent: str = "",
                     existing_token: str | None = None) -> Participant:
    """Idempotent on the recruitment id: a reused PROLIFIC_PID resumes the same participant."""
    if not study.is_active:
        raise SubmissionError("inactive", "This study is not accepting participants.")
    if not study.questions.exists():
        raise SubmissionError("no_questions", "This study is not ready yet (it has no questions).")
    params = _clean_params(params)
    recruitment_id = params.get("PROLIFIC_PID") or None
    if recruitment_id:
        found = Participant.objects.filter(study=study, recruitment_id=recruitment_id).first()
        if found:
            return found
    elif existing_token:
        found = Participant.objects.filter(study=study, token=existing_token).first()
        if found:
            return found
    fields = {attr: params.get(name, "") for name, attr in RECRUITMENT_PARAMS.items()}
    fields["recruitment_id"] = recruitment_id
    try:
        with transaction.atomic():
            return Participant.objects.create(study=study, url_params=params, user_agent=user_agent[:400], **fields)
    except IntegrityError:  # two tabs joined with the same PROLIFIC_PID at once
        return Participant.objects.get(study=study, recruitment_id=recruitment_id)


def participant_consent(*, participant: Participant) -> Participant:
    now = timezone.now()
    with transaction.atomic():
        participant = Participant.objects.select_for_update().get(pk=participant.pk)
        if participant.status != Participant.Status.JOINED:
            return participant  # consenting twice (second tab, back button) changes nothing
        participant.status = Participant.Status.LOBBY
        participant.consented_at = now
        participant.lobby_entered_at = now
        participant.save(update_fields=["status", "consented_at", "lobby_entered_at"])
        realtime.push_after_commit(lobbies=[participant.study_id], participants=[participant.pk])
    lobby_match(study_id=participant.study_id, now=now)
    participant.refresh_from_db()
    return participant


def lobby_match(*, study_id: int, now: datetime | None = None) -> list[Group]:
    """Form groups by arrival and time out lone waiters. Safe to call from any process."""
    now = now or timezone.now()
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)  # one matcher per study at a time
        waiting_rows = list(
            Participant.objects.filter(study=study, status=Participant.Status.LOBBY)
            .values_list("id", "lobby_entered_at")
        )
        if not waiting_rows:
            return []
        from deliberation.services import connected_participant_ids

        connected = connected_participant_ids([pid for pid, _ in waiting_rows], now)
        decision = match_lobby(
            [Waiting(pid, entered, pid in connected) for pid, entered in waiting_rows], now,
            min_size=study.min_group_size, max_size=study.max_group_size,
            timeout_seconds=study.lobby_timeout_seconds,
        )
        groups = [group_create(study=study, participant_ids=ids, now=now) for ids in decision.groups]
        if decision.timed_out:
            Participant.objects.filter(pk__in=decision.timed_out, status=Participant.Status.LOBBY).update(
                status=Participant.Status.LOBBY_TIMEOUT,
                completion_code=study.completion_code("lobby_timeout"), finished_at=now)
            realtime.push_after_commit(participants=decision.timed_out, lobbies=[study.pk])
    return groups


# --- presence -------------------------------------------------------------------------------
def presence_connect(*, participant_id: int, channel_name: str) -> None:
    now = timezone.now()
    Presence.objects.update_or_create(channel_name=channel_name,
                                      defaults={"participant_id": participant_id, "last_seen": now})
    _presence_changed(participant_id)


def presence_ping(*, participant_id: int, channel_name: str) -> None:
    updated = Presence.objects.filter(channel_name=channel_name).update(last_seen=timezone.now())
    if not updated:  # the row was swept while the socket stayed open (e.g. a long sleep): re-register
        presence_connect(participant_id=participant_id, channel_name=channel_name)


def presence_disconnect(*, participant_id: int, channel_name: str) -> None:
    Presence.objects.filter(channel_name=channel_name).delete()
    _presence_changed(participant_id)


def _presence_changed(participant_id: int) -> None:
    participant = Participant.objects.only("group_id", "status", "study_id").get(pk=participant_id)
    if participant.group_id and participant.status == Participant.Status.IN_GROUP:
        group_apply(group_id=participant.group_id, event=flow.PresenceChanged())
    elif participant.status == Participant.Status.LOBBY:
        lobby_match(study_id=participant.study_id)


def presence_sweep(*, now: datetime | None = None) -> set[int]:
    """Forget sockets that stopped pinging (a crashed server leaves such rows); returns affected groups."""
    now = now or timezone.now()
    horizon = now - timedelta(seconds=settings.PRESENCE_TIMEOUT_SECONDS)
    stale = Presence.objects.filter(last_seen__lt=horizon)
    groups = set(stale.exclude(participant__group=None).values_list("participant__group_id", flat=True))
    stale.delete()
    return groups
