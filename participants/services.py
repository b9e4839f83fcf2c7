"""Participant writes: join from a link, consent, presence. Lobby matching is ``deliberation.lobby``."""
from __future__ import annotations

import logging
import math
import re
import time
import unicodedata
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import TYPE_CHECKING

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Case, DateTimeField, Exists, Q, Value, When
from django.utils import timezone
from django.utils.translation import gettext_lazy

from core.errors import SubmissionError
from core.prepared import Prepared

from . import signals
from .models import Participant, Presence
from .presence import liveness_store

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


def join_rate_allowed(ip: str, *, limit: int, window_seconds: int, now: float | None = None,
                      scope: str = "participants") -> bool:
    """Count one new join for ``ip`` in the current fixed window of the shared cache (Django's cache: Redis in
    production); False over the limit. ``scope`` keeps separate counts (participants, legibility judges)."""
    if limit <= 0:
        return True
    window = max(1, window_seconds)
    bucket = int((now if now is not None else time.time()) // window)
    key = f"join-rate:{scope}:{ip}:{bucket}"
    cache.add(key, 0, timeout=window + 5)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window + 5)
        count = 1
    return count <= limit


RESUME_REFUSED = gettext_lazy(
    "This Prolific id has already started this study in another browser or session, so it cannot be resumed "
    "from this link. Please open the study again from Prolific in the browser you started in. If you changed "
    "device, message the researchers on Prolific with your Prolific id: they can move your session to this "
    "device. Your answers so far are kept.")


def find_returning(model, *, study, params: dict[str, str], existing_token: str | None):
    """The row (a participant, a judge) this visitor may resume in ``study``, or None for a newcomer.

    Resumes with this browser's cookie (its token), unless the link names another PROLIFIC_PID; or with the same
    PROLIFIC_PID *and* SESSION_ID as the row was created with. A PROLIFIC_PID that has a row, with any other (or
    no) SESSION_ID, raises ``SubmissionError("recruitment_id_in_use")``: neither a second row nor the first
    person's session. Re-linking a genuine change of device is the experimenter's (``relink``)."""
    params = _clean_params(params)
    recruitment_id = params.get("PROLIFIC_PID") or None
    session_id = params.get("SESSION_ID") or ""
    rows = model.objects.filter(study=study)
    if is_token(existing_token):
        found = rows.filter(token=existing_token).first()
        if found is not None and (recruitment_id is None or found.recruitment_id == recruitment_id):
            return found
    if recruitment_id:
        found = rows.filter(recruitment_id=recruitment_id).first()
        if found is not None:
            if session_id and found.recruitment_session_id == session_id:
                return found
            raise SubmissionError("recruitment_id_in_use", RESUME_REFUSED)
    return None


def returning_participant(*, study: Study, params: dict[str, str], existing_token: str | None) -> Participant | None:
    """The participant a join link resumes (``find_returning``)."""
    return find_returning(Participant, study=study, params=params, existing_token=existing_token)


def join_or_resume(model, *, study, params: dict[str, str], user_agent: str = "", existing_token: str | None = None,
                   defaults: dict | None = None):
    """``(row, created)``: a new ``model`` row (a participant, a legibility judge) for ``study``, or the one this
    visitor may resume (``find_returning``: raises ``SubmissionError`` for a PROLIFIC_PID already in use). Every
    URL parameter is kept, bounded; a mangled token never reaches the query. ``defaults``: more fields for a new
    row only."""
    found = find_returning(model, study=study, params=params, existing_token=existing_token)
    if found is not None:
        return found, False
    params = _clean_params(params)
    recruitment_id = params.get("PROLIFIC_PID") or None
    fields = {attr: params.get(name, "") for name, attr in RECRUITMENT_PARAMS.items()}
    fields["recruitment_id"] = recruitment_id  # NULL, not "", without an id: unique only where given
    try:
        with transaction.atomic():
            return model.objects.create(study=study, url_params=params, user_agent=_printable(user_agent, 400),
                                        **fields, **(defaults or {})), True
    except IntegrityError:  # two tabs joined with the same PROLIFIC_PID at once: the same rule decides
        found = find_returning(model, study=study, params=params, existing_token=None)
        if found is None:
            raise
        return found, False


def relink(row):
    """Move a participant's or judge's session to a new device: a new token, so the old browser's cookie and page
    link stop working and the new link (``/p/TOKEN/``, ``/legibility/j/TOKEN/``) is the only way in. The admin
    action (``participants.admin.RelinkMixin``) checks the permission and logs it."""
    from .models import new_token

    with transaction.atomic():
        row = type(row).objects.select_for_update().get(pk=row.pk)
        row.token = new_token()
        row.save(update_fields=["token"])
    logger.info("re-linked %s %s to a new device", type(row).__name__, row.pk)
    return row


# --- consent ------------------------------------------------------------------------------------
def current_consent(study):
    """The consent wording participants of ``study`` see now (a ``ConsentVersion`` / ``JudgeConsentVersion``):
    the experimenter's text, verbatim, and the disclosure generated from the study's settings. A new version is
    stored the first time a changed wording is shown; the same wording always gets the same version."""
    from .consent import consent_sha256

    text, disclosure = study.consent_text, study.consent_disclosure()
    digest = consent_sha256(text, disclosure)
    versions = study.consent_versions
    for _ in range(5):
        found = versions.filter(sha256=digest).first()
        if found is not None:
            return found
        last = versions.order_by("-version").values_list("version", flat=True).first() or 0
        try:
            with transaction.atomic():
                return versions.create(version=last + 1, experimenter_text=text, disclosure=disclosure,
                                       sha256=digest)
        except IntegrityError:  # another request stored this wording, or took the number, at the same time
            continue
    raise SubmissionError("busy", gettext_lazy("The study is busy; please reload the page."))


def _record_consent(row, consent, now: datetime) -> None:
    row.consented_at = now
    row.consent_version = consent.version
    row.consent_sha256 = consent.sha256


# --- simulated participants -----------------------------------------------------------------
SIMULATED_PARAM = "SIMULATED"  # the join link's query parameter that carries a bot token
SIMULATED_SALT = "participants.simulated"
SIMULATED_TOKEN_MAX_AGE = 7 * 24 * 3600  # seconds; far above the longest bot run (run_bots --timeout)


def simulated_join_token(study_slug: str) -> str:
    """A token that marks whoever joins ``study_slug`` with it as simulated (``Participant.is_simulated``).

    Why a signed token on the join link: bots join over HTTP exactly like people (``bots.client``), often
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
        raise SubmissionError("bad_simulated_token", gettext_lazy(
            "This link carries an invalid or expired simulated-participant token. People join with the plain study "
            "link."))
    return True


STUDY_FULL = gettext_lazy("This study is full: it already has all the participants it needs. Thank you for your "
                          "interest — you do not need to do anything else.")


def _check_participant_cap(study: Study) -> None:
    """The study's participant cap (``Study.max_participants``): everyone who consented counts."""
    if study.max_participants is not None and Participant.objects.filter(study=study).exclude(
            status=Participant.Status.JOINED).count() >= study.max_participants:
        raise SubmissionError("inactive", STUDY_FULL)


def check_joinable(*, study: Study, params: dict[str, str]) -> bool:
    """Raise ``SubmissionError`` when ``study`` takes no newcomer from this link; True for a simulated one."""
    if not study.is_active:
        # A study that closed itself at a cap says it is full (deliberation/caps.py); one closed by hand, the plain
        # message.
        raise SubmissionError("inactive", STUDY_FULL if study.closed_reason else gettext_lazy(
            "This study is not accepting participants."))
    if study.paused_at is not None:
        raise SubmissionError("paused", gettext_lazy("This study is paused for a few minutes. Please open the link "
                                                     "again a little later; nothing has been stored for you yet."))
    _check_participant_cap(study)
    if not study.questions.exists():
        raise SubmissionError("no_questions", gettext_lazy("This study is not ready yet (it has no questions)."))
    return _joins_simulated(study, params.get(SIMULATED_PARAM))


def participant_join(*, study: Study, params: dict[str, str], user_agent: str = "",
                     existing_token: str | None = None, consent=None) -> Participant:
    """A new participant, or the one this visitor may resume (``find_returning``). With ``consent`` (the
    ``ConsentVersion`` they agreed to: the join view passes it on the consent POST) a new row is created
    consented, in the lobby, and matched; without it (code and tests), unconsented. A valid ``SIMULATED`` token
    (``simulated_join_token``) creates a simulated participant; the token is not stored."""
    params = dict(params)
    simulated = check_joinable(study=study, params=params)
    params.pop(SIMULATED_PARAM, None)
    now = timezone.now()
    with transaction.atomic():
        participant, created = join_or_resume(Participant, study=study, params=params, user_agent=user_agent,
                                              existing_token=existing_token,
                                              defaults={"is_simulated": True} if simulated else None)
        if consent is None:
            return participant
        if not created:  # an unconsented row from before: hold it, as participant_consent does
            participant = Participant.objects.select_for_update().get(pk=participant.pk)
        if participant.status != Participant.Status.JOINED:
            return participant
        if study.max_participants is not None:
            # Count again under the study's row lock, so simultaneous consents cannot pass the cap.
            type(study).objects.select_for_update().filter(pk=study.pk).first()
            _check_participant_cap(study)
        in_lobby = _enter_lobby(participant, consent, now)
    if in_lobby:
        signals.lobby_entered.send(sender=Participant, participant=participant, now=now)  # deliberation.lobby
    participant.refresh_from_db()
    return participant


def _enter_lobby(participant: Participant, consent, now: datetime) -> bool:
    """Consent and enter the lobby, or the screening questions first when the study has any (in the caller's
    transaction, on a row it holds or just created). True when they are in the lobby: the caller then sends
    ``signals.lobby_entered`` after the commit (``deliberation.lobby`` pushes the lobby and matches);
    ``participants.screening.screening_submit`` does that for those who pass."""
    from .models import ScreeningQuestion

    screening = ScreeningQuestion.objects.filter(study_id=participant.study_id).exists()
    participant.status = Participant.Status.SCREENING if screening else Participant.Status.LOBBY
    participant.lobby_entered_at = None if screening else now
    _record_consent(participant, consent, now)
    participant.save(update_fields=["status", "consented_at", "lobby_entered_at", "consent_version",
                                    "consent_sha256"])
    return not screening


def participant_consent(*, participant: Participant, consent=None) -> Participant:
    """Consent for a row that exists unconsented (code, tests, rows from before consent created the row);
    ``consent``: the version agreed to, by default the study's current one."""
    now = timezone.now()
    with transaction.atomic():
        participant = Participant.objects.select_for_update().select_related("study").get(pk=participant.pk)
        if participant.status != Participant.Status.JOINED:
            return participant  # consenting twice (second tab, back button) changes nothing
        in_lobby = _enter_lobby(participant, consent or current_consent(participant.study), now)
    if in_lobby:
        signals.lobby_entered.send(sender=Participant, participant=participant, now=now)  # deliberation.lobby
    participant.refresh_from_db()
    return participant


# --- presence -------------------------------------------------------------------------------
# The Presence table registers open sockets (connect and disconnect write it); pings go to the liveness store
# (participants.presence: Redis, or the row itself in the demo), so a ping costs PostgreSQL one read, no write.
def presence_connect(*, participant_id: int, channel_name: str, now: datetime | None = None) -> None:
    """Register a socket in three statements: the participant's ``last_seen_at`` (unless they withdrew), one
    upsert of the socket's row, then the participant's row read for the presence change (the lobby or the
    group moves on), after the writes as before."""
    now = now or timezone.now()
    if not Participant.objects.filter(pk=participant_id).exclude(status=Participant.Status.WITHDRAWN) \
            .update(last_seen_at=now):
        return  # a tab left open after withdrawing must not count as a member present (participants.withdrawal)
    Presence.objects.bulk_create(
        [Presence(participant_id=participant_id, channel_name=channel_name, last_seen=now)],
        update_conflicts=True, unique_fields=["channel_name"], update_fields=["participant_id", "last_seen"])
    _presence_changed(participant_id)


# The hot reads of a socket, compiled once per process (core.prepared).
_PING_READ = Prepared(lambda pk, channel_name: Participant.objects.filter(pk=pk)
                      .annotate(registered=Exists(Presence.objects.filter(channel_name=channel_name)))
                      .values_list("status", "group_id", "group__version", "registered"),
                      pk=int, channel_name=str)
_PRESENCE_ROW = Prepared(lambda pk: Participant.objects.only("group_id", "status", "study_id").filter(pk=pk), pk=int)


def presence_ping(*, participant_id: int, channel_name: str,
                  now: datetime | None = None) -> tuple[str, int | None, int | None]:
    """A socket's heartbeat. Returns the participant's ``(status, group_id, group version)`` from the same read
    that checks the socket is still registered; a socket whose row was swept (e.g. a long sleep) registers
    again. With Redis this writes nothing to PostgreSQL."""
    now = now or timezone.now()
    status, group_id, version, registered = _PING_READ.one(pk=participant_id, channel_name=channel_name)
    store = liveness_store()
    if not registered or not store.touch(participant_id=participant_id, channel_name=channel_name, now=now):
        presence_connect(participant_id=participant_id, channel_name=channel_name, now=now)
    return status, group_id, version


def presence_touch(*, participant_id: int, channel_name: str, now: datetime | None = None) -> bool:
    """A heartbeat that reads and writes no PostgreSQL: the ping recorded in the liveness store alone. False when
    the store is the database's (the demo) or did not take the ping (Redis unreachable): the caller then takes
    ``presence_ping``'s path, which reads the socket's row and registers it again if it was swept."""
    store = liveness_store()
    if store.writes_database:
        return False
    return store.record(participant_id=participant_id, channel_name=channel_name, now=now or timezone.now())


def presence_surplus(*, participant_id: int, keep: int, now: datetime | None = None) -> list[str]:
    """The channel names of a participant's live sockets beyond the newest ``keep``, oldest first: the sockets
    a new connection closes (``WEBSOCKET_MAX_SOCKETS_PER_PARTICIPANT``). The newest win, so a participant is never
    locked out by tabs they left open or by sockets a network change left half-open."""
    rows = list(Presence.objects.filter(participant_id=participant_id)
                .order_by("-connected_at", "-id").values_list("channel_name", "last_seen"))
    live_names = _live_channels(dict(rows), now or timezone.now())
    return [name for name, _ in rows if name in live_names][keep:][::-1]


def presence_disconnect(*, participant_id: int, channel_name: str) -> None:
    Presence.objects.filter(channel_name=channel_name).delete()
    liveness_store().forget([channel_name])
    # How long somebody has been away decides a bot takeover (deliberation/takeover.py).
    Participant.objects.filter(pk=participant_id).update(last_seen_at=timezone.now())
    _presence_changed(participant_id)


def _presence_changed(participant_id: int) -> None:
    participant = _PRESENCE_ROW.one(pk=participant_id)
    signals.presence_changed.send(sender=Participant, participant=participant)  # deliberation.lobby


def _live_channels(row_seen: dict[str, datetime], now: datetime) -> set[str]:
    """Of sockets (channel name -> their row's ``last_seen``), those that pinged within the timeout. When the
    liveness store cannot tell (unreachable, or its history is younger than the timeout), all of them."""
    horizon = now.timestamp() - settings.PRESENCE_TIMEOUT_SECONDS
    live = {name for name, seen in row_seen.items() if seen.timestamp() >= horizon}
    rest = [name for name in row_seen if name not in live]
    if not rest:
        return live
    seen = liveness_store().channels_seen(rest)
    if not seen.complete_for(horizon):
        return set(row_seen)
    return live | {name for name in rest if seen.scores.get(name, -math.inf) >= horizon}


def presence_sweep(*, now: datetime | None = None) -> set[int]:
    """Forget sockets that stopped pinging (a crashed server leaves such rows); returns affected groups.

    Rows whose own ``last_seen`` is old are checked against the liveness store: live ones get the store's time
    written back in one statement (so each row is written about once per timeout, not per ping, and the next
    sweeps skip it), quiet ones are deleted. While the store cannot tell, nothing is deleted."""
    now = now or timezone.now()
    horizon = now - timedelta(seconds=settings.PRESENCE_TIMEOUT_SECONDS)
    rows = list(Presence.objects.filter(last_seen__lt=horizon)
                .values_list("pk", "channel_name", "participant_id", "participant__group_id", "last_seen"))
    if not rows:
        return set()
    store = liveness_store()
    seen = store.channels_seen([name for _, name, _, _, _ in rows])
    if not seen.complete_for(horizon.timestamp()):
        return set()  # the store is down or lost its data: nobody is gone because of that
    refreshed = {pk: seen.scores[name] for pk, name, _, _, _ in rows
                 if seen.scores.get(name, -math.inf) >= horizon.timestamp()}
    if refreshed:
        Presence.objects.filter(pk__in=refreshed).update(last_seen=Case(
            *(When(pk=pk, then=Value(datetime.fromtimestamp(stamp, tz=dt_timezone.utc)))
              for pk, stamp in refreshed.items()), output_field=DateTimeField()))
    stale = [(pk, name, pid, gid, max(row_seen, datetime.fromtimestamp(seen.scores.get(name, 0), tz=dt_timezone.utc)))
             for pk, name, pid, gid, row_seen in rows if pk not in refreshed]
    if not stale:
        return set()
    Presence.objects.filter(pk__in=[pk for pk, *_ in stale]).delete()
    store.forget([name for _, name, *_ in stale])
    store.prune(horizon.timestamp() - 24 * 3600)
    last_seen: dict[int, datetime] = {}
    for _, _, pid, _, seen_at in stale:
        last_seen[pid] = max(seen_at, last_seen.get(pid, seen_at))
    for pid, seen_at in last_seen.items():  # a crashed server's sockets: they were last heard from then
        Participant.objects.filter(pk=pid).filter(Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=seen_at)) \
            .update(last_seen_at=seen_at)
    return {gid for *_, gid, _ in stale if gid is not None}
