"""Participant writes: join from a link, consent, presence. Lobby matching is ``deliberation.lobby``."""
from __future__ import annotations

import logging
import re
import time
import unicodedata
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import SubmissionError

from . import signals
from .models import Participant, Presence

if TYPE_CHECKING:
    from deliberation.models import Study

logger = logging.getLogger(__name__)

RECRUITMENT_PARAMS = {"PROLIFIC_PID": "recruitment_id", "STUDY_ID": "recruitment_study_id",
                      "SESSION_ID": "recruitment_session_id"}
MAX_PARAM_CHARS = 128


TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")  # what models.new_token makes (URL-safe base64)


def is_token(value: object) -> bool:
    """Only well-formed tokens reach a query (a NUL byte in a path or cookie would make PostgreSQL raise)."""
    return isinstance(value, str) and TOKEN.fullmatch(value) is not None


def _printable(value: object, limit: int) -> str:
    """Bounded and without control characters (PostgreSQL refuses U+0000)."""
    return "".join(ch for ch in str(value) if unicodedata.category(ch) != "Cc")[:limit]


def _clean_params(params: dict[str, str]) -> dict[str, str]:
    """Keep every URL parameter (bounded), so nothing a recruiter appended is lost."""
    kept = {}
    for key, value in list(params.items())[:50]:
        kept[_printable(key, 64)] = _printable(value, MAX_PARAM_CHARS)
    return kept


def client_ip(meta: dict, trusted_proxies: int) -> str:
    """The client's address. X-Forwarded-For is believed only for the ``trusted_proxies`` hops our own
    proxies appended (the rightmost ones); anything to their left was written by the client."""
    remote = str(meta.get("REMOTE_ADDR") or "unknown")
    if trusted_proxies <= 0:
        return remote
    hops = [h.strip() for h in str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",") if h.strip()]
    if len(hops) < trusted_proxies:
        return remote
    return hops[-trusted_proxies][:64]


def join_rate_allowed(ip: str, *, limit: int, window_seconds: int, now: float | None = None) -> bool:
    """Count one new join for ``ip`` in the current fixed window of the shared cache; False over the limit."""
    if limit <= 0:
        return True
    window = max(1, window_seconds)
    bucket = int((now if now is not None else time.time()) // window)
    key = f"join-rate:{ip}:{bucket}"
    cache.add(key, 0, timeout=window + 5)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window + 5)
        count = 1
    return count <= limit


def returning_participant(*, study: Study, params: dict[str, str], existing_token: str | None) -> Participant | None:
    """The participant a join link resumes (same PROLIFIC_PID, or this browser's cookie), if any."""
    recruitment_id = _printable(params.get("PROLIFIC_PID") or "", MAX_PARAM_CHARS) or None
    if recruitment_id:
        return Participant.objects.filter(study=study, recruitment_id=recruitment_id).first()
    if is_token(existing_token):
        return Participant.objects.filter(study=study, token=existing_token).first()
    return None


def join_or_resume(model, *, study, params: dict[str, str], user_agent: str = "", existing_token: str | None = None,
                   defaults: dict | None = None):
    """A new ``model`` row (a participant, a legibility judge) for ``study``, or the one this visitor already has.

    By recruitment id (a reused PROLIFIC_PID resumes), else by the token of an earlier visit (a reload without
    the id); a mangled token never reaches the query. Every URL parameter is kept, bounded. ``defaults``: more
    fields for a new row only."""
    params = _clean_params(params)
    recruitment_id = params.get("PROLIFIC_PID") or None
    rows = model.objects.filter(study=study)
    if recruitment_id:
        found = rows.filter(recruitment_id=recruitment_id).first()
    else:
        found = rows.filter(token=existing_token).first() if is_token(existing_token) else None
    if found:
        return found
    fields = {attr: params.get(name, "") for name, attr in RECRUITMENT_PARAMS.items()}
    fields["recruitment_id"] = recruitment_id  # NULL, not "", without an id: unique only where given
    try:
        with transaction.atomic():
            return model.objects.create(study=study, url_params=params, user_agent=_printable(user_agent, 400),
                                        **fields, **(defaults or {}))
    except IntegrityError:  # two tabs joined with the same PROLIFIC_PID at once
        return model.objects.get(study=study, recruitment_id=recruitment_id)


# --- simulated participants -----------------------------------------------------------------
SIMULATED_PARAM = "SIMULATED"  # the join link's query parameter that carries a bot token
SIMULATED_SALT = "participants.simulated"
SIMULATED_TOKEN_MAX_AGE = 7 * 24 * 3600  # seconds; far above the longest bot run (run_bots --timeout)


def simulated_join_token(study_slug: str) -> str:
    """A token that marks whoever joins ``study_slug`` with it as simulated (``Participant.is_simulated``).

    Why a signed token on the join link: bots join over HTTP exactly like people (``participants.bots``), often
    against a server whose database ``run_bots`` cannot reach, so the mark must travel with the join itself and
    be set as the row is created (no window in which a bot counts as human; nothing to fix up after a crashed
    run). Only a holder of the server's ``SECRET_KEY`` (``manage.py run_bots`` on the deployment) can make one,
    unlike a recruitment id, user agent or plain parameter a participant could type, and it names one study and
    expires. A wrong or expired token is refused outright, so a bot run with the wrong key fails loudly instead of
    being stored as human data."""
    return signing.dumps(study_slug, salt=SIMULATED_SALT)


def _joins_simulated(study: Study, token: object) -> bool:
    if token is None:
        return False
    try:
        slug = signing.loads(str(token), salt=SIMULATED_SALT, max_age=SIMULATED_TOKEN_MAX_AGE)
    except signing.BadSignature:  # also an expired one
        slug = None
    if slug != study.slug:
        raise SubmissionError("bad_simulated_token", "This link carries an invalid or expired simulated-participant "
                                                     "token. People join with the plain study link.")
    return True


def participant_join(*, study: Study, params: dict[str, str], user_agent: str = "",
                     existing_token: str | None = None) -> Participant:
    """Idempotent on the recruitment id: a reused PROLIFIC_PID resumes the same participant. A valid
    ``SIMULATED`` token (``simulated_join_token``) creates a simulated participant; the token is not stored."""
    if not study.is_active:
        raise SubmissionError("inactive", "This study is not accepting participants.")
    if not study.questions.exists():
        raise SubmissionError("no_questions", "This study is not ready yet (it has no questions).")
    params = dict(params)
    simulated = _joins_simulated(study, params.pop(SIMULATED_PARAM, None))
    return join_or_resume(Participant, study=study, params=params, user_agent=user_agent,
                          existing_token=existing_token, defaults={"is_simulated": True} if simulated else None)


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
    signals.lobby_entered.send(sender=Participant, participant=participant, now=now)  # deliberation.lobby
    participant.refresh_from_db()
    return participant


# --- presence -------------------------------------------------------------------------------
def presence_connect(*, participant_id: int, channel_name: str) -> None:
    now = timezone.now()
    Presence.objects.update_or_create(channel_name=channel_name,
                                      defaults={"participant_id": participant_id, "last_seen": now})
    Participant.objects.filter(pk=participant_id).update(last_seen_at=now)
    _presence_changed(participant_id)


def presence_ping(*, participant_id: int, channel_name: str) -> None:
    updated = Presence.objects.filter(channel_name=channel_name).update(last_seen=timezone.now())
    if not updated:  # the row was swept while the socket stayed open (e.g. a long sleep): re-register
        presence_connect(participant_id=participant_id, channel_name=channel_name)


def presence_disconnect(*, participant_id: int, channel_name: str) -> None:
    Presence.objects.filter(channel_name=channel_name).delete()
    # How long somebody has been away decides a bot takeover (deliberation/takeover.py).
    Participant.objects.filter(pk=participant_id).update(last_seen_at=timezone.now())
    _presence_changed(participant_id)


def _presence_changed(participant_id: int) -> None:
    participant = Participant.objects.only("group_id", "status", "study_id").get(pk=participant_id)
    signals.presence_changed.send(sender=Participant, participant=participant)  # deliberation.lobby


def presence_sweep(*, now: datetime | None = None) -> set[int]:
    """Forget sockets that stopped pinging (a crashed server leaves such rows); returns affected groups."""
    now = now or timezone.now()
    horizon = now - timedelta(seconds=settings.PRESENCE_TIMEOUT_SECONDS)
    stale = Presence.objects.filter(last_seen__lt=horizon)
    rows = list(stale.values_list("participant_id", "participant__group_id", "last_seen"))
    if not rows:
        return set()
    stale.delete()
    last_seen: dict[int, datetime] = {}
    for pid, _, seen in rows:
        last_seen[pid] = max(seen, last_seen.get(pid, seen))
    for pid, seen in last_seen.items():  # a crashed server's sockets: they were last heard from then
        Participant.objects.filter(pk=pid).filter(Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=seen)) \
            .update(last_seen_at=seen)
    return {gid for _, gid, _ in rows if gid is not None}
