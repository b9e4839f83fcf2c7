"""The participant websocket: thin. Parses typed messages, calls services, sends snapshots.

Protocol: on connect the server sends a snapshot; after every committed change to the
participant or their group it sends a fresh one. The client pings every ~15 s with the
version it shows; a stale version gets a snapshot back, so a lost push repairs itself.

A group push carries the group's shared state; the socket makes its participant's snapshot
from it and what it last showed (``selectors.PushView``) and reads the database only when
that is not safe, so one change costs one read for the group, not one per member.

Everything the socket sends is in the study's language (``Study.language``): every event it handles runs under
``translation.override``, and the replies' texts are lazily translated when the reply is built.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext, gettext_lazy

from core.prepared import Prepared
from participants.models import Participant
from participants.services import (
    is_token,
    presence_connect,
    presence_disconnect,
    presence_ping,
    presence_surplus,
    presence_touch,
)

from . import messages as m
from . import realtime, services
from .drafts import draft_batch
from .ratelimit import SocketLimiter
from .selectors import PushView, participant_snapshot, snapshot_version
from .services import DraftWrite

logger = logging.getLogger(__name__)


def db(function):
    """Run blocking ORM code on the thread pool. Not thread-sensitive: Channels gives consumers no
    per-connection thread context, so the default (thread_sensitive=True) would run every socket's database
    work of the whole process on ONE thread, one call after another. Each call here is self-contained (its
    own transaction; row locks order concurrent writers), so calls from different sockets may overlap."""
    return database_sync_to_async(function, thread_sensitive=False)


def _read_snapshot(participant_id: int) -> dict:
    return participant_snapshot(Participant(pk=participant_id))


read_snapshot = db(_read_snapshot)
# A ping recorded in the liveness store (Redis) only: no database connection, so no Channels connection handling.
touch = sync_to_async(presence_touch, thread_sensitive=False)


def _connect(participant_id: int, channel_name: str) -> list[str]:
    """Register the socket; return the participant's older sockets beyond the cap, which it closes."""
    presence_connect(participant_id=participant_id, channel_name=channel_name)
    return presence_surplus(participant_id=participant_id, keep=settings.WEBSOCKET_MAX_SOCKETS_PER_PARTICIPANT)


# Close codes (4000-4999 are the application's). daphne sends no close reason, so an error message with the
# reason comes first.
CLOSE_UNKNOWN_TOKEN = 4404
CLOSE_REPLACED = 4409  # a newer socket of the same participant took this one's place (the socket cap)
REPLACED_MESSAGE = gettext_lazy("This study was opened in another window or tab, so this one was disconnected. "
                                "Nothing you entered was lost.")
# Message type -> rate-limit bucket (settings.WEBSOCKET_RATE_LIMITS).
BUCKETS = {"submit_opinion": "submit", "submit_critique": "submit", "submit_ratings": "submit"}


def _ping(participant_id: int, channel_name: str) -> str:
    """Presence heartbeat and the participant's current snapshot version: one read, no write (with Redis)."""
    return snapshot_version(*presence_ping(participant_id=participant_id, channel_name=channel_name))


# A socket's own reads, compiled once per process (core.prepared): every connect, draft and submission runs one.
_BY_TOKEN = Prepared(lambda token: Participant.objects.filter(token=token).select_related("study")
                     .only("id", "group_id", "study_id", "study__language")[:1], token=str)
_GROUP_OF = Prepared(lambda pk: Participant.objects.filter(pk=pk).values_list("group_id", flat=True), pk=int)
_WRITER = Prepared(lambda pk: Participant.objects.only("id", "group_id", "study_id", "status").filter(pk=pk), pk=int)


def _group_of(participant_id: int) -> int | None:
    return _GROUP_OF.one(pk=participant_id)


def _write(participant_id: int, message: m.ClientMessage):
    """A submission, with the participant it comes from, in one trip to the thread pool."""
    participant = _WRITER.one(pk=participant_id)
    if isinstance(message, m.SubmitOpinion):
        result = services.opinion_submit(participant=participant, text=message.text, ref=message.ref)
    elif isinstance(message, m.SubmitCritique):
        result = services.critique_submit(participant=participant, text=message.text, ref=message.ref)
    elif isinstance(message, m.SubmitRatings):
        result = services.ratings_submit(
            participant=participant, round=message.round,
            ratings={r.candidate_id: {"agreement": r.agreement, "quality": r.quality} for r in message.ratings},
            ranking=message.ranking, ref=message.ref)
    else:  # pragma: no cover - parse_client_message admits only the types above
        raise m.MessageError("unknown_type", "Unknown message type.")
    return participant.group_id, result


class ParticipantConsumer(AsyncWebsocketConsumer):
    participant_id: int | None = None
    language: str = settings.LANGUAGE_CODE  # the study's, once connected
    group_id: int | None = None
    in_lobby: bool = False
    _pushing: asyncio.Task | None = None
    _dirty: bool = False
    _must_read: bool = False  # a push without state (participant or lobby channel): read the database
    _pushed: dict | None = None  # the newest group state pushed and not yet shown
    _lobby_pushed: dict | None = None  # the newest lobby state pushed and not yet shown
    # Drafts: the newest one not yet written, with the refs it answers; when the last write happened.
    _draft: tuple[str, dict, list] | None = None
    _draft_written: float = float("-inf")
    _drafting: asyncio.Task | None = None
    _draft_lock: asyncio.Lock | None = None
    _view: PushView | None = None  # what this socket last showed
    _shown_version: str | None = None  # the version of the last snapshot sent
    _verified_at: float = float("-inf")  # monotonic: when a read last confirmed the socket's row and version
    _last_ping: float = float("-inf")
    _limiter: SocketLimiter | None = None

    async def dispatch(self, message: dict) -> None:
        """Every event (connect, a client message, a push) is handled in the study's language; tasks started
        meanwhile (the push and draft loops) keep it.

        Channels' own ``dispatch`` first runs ``close_old_connections`` through ``sync_to_async`` for every
        event, on the one thread that thread-sensitive calls share in a process: every message and every push
        of every socket then waits its turn there, one after another. This consumer touches the database only
        through ``db()``, whose calls close their own connections, so it calls the handler directly."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']!r}")
        with translation.override(self.language):
            await handler(message)

    async def connect(self) -> None:
        token = self.scope["url_route"]["kwargs"]["token"]
        participant = None
        if is_token(token):  # a mangled token (e.g. with a NUL byte) must not reach the query
            participant = await db(_BY_TOKEN.first)(token=token)
        if participant is None:
            await self.close(code=CLOSE_UNKNOWN_TOKEN)
            return
        self.participant_id = participant.pk
        self.study_id = participant.study_id
        self.language = participant.study.language
        translation.activate(self.language)  # for the rest of this event (dispatch restores the old language)
        self._limiter = SocketLimiter.from_config(settings.WEBSOCKET_RATE_LIMITS)
        await self.accept()
        if settings.IN_PROCESS_WORKER:
            from .inprocess import ensure_started

            ensure_started()
        await self.channel_layer.group_add(realtime.participant_channel(participant.pk), self.channel_name)
        await self.channel_layer.group_add(realtime.lobby_channel(participant.study_id), self.channel_name)
        self.in_lobby = True
        # The snapshot first: registering the socket moves the group on (presence), which waits for the group's
        # row lock; a submission in flight may hold it (a reload mid-submit), and the page must show its form.
        await self.send_snapshot()
        for older in await db(_connect)(participant.pk, self.channel_name):
            await self.channel_layer.send(older, {"type": "socket.replaced"})
        self._verified_at = time.monotonic()

    async def socket_replaced(self, event: dict) -> None:
        await self.send_json(m.error_reply("replaced", REPLACED_MESSAGE))
        await self.close(code=CLOSE_REPLACED)

    async def disconnect(self, code: int) -> None:
        if self.participant_id is None:
            return
        # The last draft before the socket went away is never dropped: written now, after any write in flight
        # (the lock keeps their order); then the waiting timer has nothing left to do.
        await self._write_draft(reply=False)
        if self._drafting is not None and not self._drafting.done():
            self._drafting.cancel()
        for name in (realtime.participant_channel(self.participant_id), realtime.lobby_channel(self.study_id)):
            await self.channel_layer.group_discard(name, self.channel_name)
        if self.group_id:
            await self.channel_layer.group_discard(realtime.group_channel(self.group_id), self.channel_name)
        try:
            await db(presence_disconnect)(participant_id=self.participant_id,
                                                              channel_name=self.channel_name)
        except Exception:  # the sweeper expires the presence row anyway
            logger.exception("presence_disconnect failed")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        message = None
        try:
            message = m.parse_client_message(text_data if text_data is not None else bytes_data)
            wait = self._limiter.take(BUCKETS.get(message.type, message.type), time.monotonic())
            if wait:
                await self.send_json(m.error_reply(
                    "rate_limited", gettext("Too many messages; please wait %(seconds).1f s. Nothing was stored from "
                                            "that one, and your text is kept on the page.") % {"seconds": wait},
                    message.ref, retry_after=wait))
                return
            await self.handle(message)
        except m.MessageError as exc:
            await self.send_json(m.error_reply(exc.code, exc.message, exc.ref))
        except services.SubmissionError as exc:
            if exc.code == "already_submitted":
                await self.send_snapshot()  # a second tab or a late retry: show what is stored, then say why
            await self.send_json(m.error_reply(exc.code, exc.message, getattr(message, "ref", None)))
        except Exception as exc:
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                # The client went away before the reply (uvicorn's ClientDisconnected): nobody to tell.
                logger.debug("participant %s disconnected before a reply", self.participant_id)
                return
            logger.exception("unexpected error handling a message from participant %s", self.participant_id)
            await self.send_json(m.error_reply("server_error", gettext("Something went wrong on our side; nothing you "
                                                                       "entered was lost. Please try again."),
                                               getattr(message, "ref", None)))

    async def handle(self, message: m.ClientMessage) -> None:
        if isinstance(message, m.Ping):
            if await self._ping_from_memory(message):
                return
            current = await db(_ping)(self.participant_id, self.channel_name)
            self._verified_at = time.monotonic()
            if message.version != current:
                if self._pushing is not None and not self._pushing.done():
                    # A push is being shown right now: ask it for one more fresh read and wait for it, so one
                    # read serves the push and this ping (under load both often come for the same change).
                    self._must_read = self._dirty = True
                    await asyncio.shield(self._pushing)
                else:
                    await self.send_snapshot()
            else:
                await self.send_json({"type": "pong", "version": current, "ref": message.ref})
            return
        if isinstance(message, m.Sync):
            await self.send_snapshot()
            return
        if isinstance(message, m.SaveDraft):
            payload = {"text": message.text} if message.phase in ("opinion", "critique") else \
                {"ratings": message.ratings or {}, "ranking": message.ranking or []}
            refs = self._draft[2] if self._draft is not None else []
            self._draft = (message.phase, payload, [*refs, message.ref])  # the newest wins
            if self._drafting is None or self._drafting.done():
                if time.monotonic() - self._draft_written >= settings.DRAFT_WRITE_INTERVAL_SECONDS:
                    await self._write_draft()  # none written lately: at once, answered before the next message
                else:
                    self._drafting = asyncio.ensure_future(self._draft_loop())
            return
        if self._draft is not None:  # the page sends its draft just before a submission: it goes first
            await self._write_draft()
        group_id, result = await db(_write)(self.participant_id, message)
        if result.created and not result.replayed and self._view is not None:
            kind = {m.SubmitOpinion: "opinion", m.SubmitCritique: "critique"}.get(type(message), "ratings")
            self._view.answer_stored(group_id, kind, result.stored, getattr(message, "round", None))
        # A repeated ref (the client never saw the ack) gets the original ack: created=True, nothing new stored.
        await self.send_json(m.ack_reply(message.ref, created=result.created))
        if not result.created or result.replayed:
            await self.send_snapshot()  # a resubmission (second tab, retry): show what is stored

    async def _ping_from_memory(self, message: m.Ping) -> bool:
        """Answer a ping without the database when nothing can have changed unseen: the client shows the version
        this socket last sent, no push is waiting to be shown, the socket's last read (its row and version) is
        under PING_VERIFY_SECONDS old, and it pinged recently (a socket quiet for long may have been swept and
        must register again). The ping is recorded in the liveness store; False sends it down the reading path
        (also when the store is the database's, as in the demo, or Redis is unreachable)."""
        now = time.monotonic()
        previous, self._last_ping = self._last_ping, now
        if (message.version != self._shown_version or self._dirty
                or (self._pushing is not None and not self._pushing.done())
                or now - self._verified_at >= settings.PING_VERIFY_SECONDS
                or now - previous >= settings.PRESENCE_TIMEOUT_SECONDS / 2):
            return False
        if not await touch(participant_id=self.participant_id, channel_name=self.channel_name):
            return False
        await self.send_json({"type": "pong", "version": message.version, "ref": message.ref})
        return True

    async def _draft_loop(self) -> None:
        """Write this socket's newest draft at most once per DRAFT_WRITE_INTERVAL_SECONDS; what arrives in
        between replaces the waiting one and is written when the interval is over. Drafts are acknowledged
        only once written, so the page keeps (and resends) any draft the server might not hold."""
        try:
            while self._draft is not None:
                wait = self._draft_written + settings.DRAFT_WRITE_INTERVAL_SECONDS - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._write_draft()
        except Exception:
            logger.exception("draft writing for participant %s failed", self.participant_id)

    async def _write_draft(self, *, reply: bool = True) -> None:
        if self._draft_lock is None:
            self._draft_lock = asyncio.Lock()
        async with self._draft_lock:  # one write at a time, in order: an older draft never lands last
            await self._write_draft_now(reply)

    async def _write_draft_now(self, reply: bool) -> None:
        if self._draft is None:
            return
        (phase, payload, refs), self._draft = self._draft, None
        self._draft_written = time.monotonic()
        try:
            # The group the socket shows: ``drafts_save`` checks the member is still in it (a fresh read).
            group_id = self.group_id if self.group_id is not None else await db(_group_of)(self.participant_id)
            saved = await draft_batch().save(DraftWrite(self.participant_id, group_id, phase, payload))
        except services.SubmissionError as exc:
            if reply:
                for ref in refs:
                    await self.send_json(m.error_reply(exc.code, exc.message, ref))
            return
        except Exception:
            logger.exception("draft of participant %s not stored", self.participant_id)
            if reply:  # the page keeps the unacknowledged draft and sends it again
                for ref in refs:
                    await self.send_json(m.error_reply("server_error", gettext(
                        "Your draft could not be saved just now; it is kept on the page."), ref))
            return
        if saved and self._view is not None:
            self._view.draft_saved(phase, payload)
        if reply:  # created=False: the phase had moved on, nothing was stored (the next snapshot shows what was)
            for ref in refs:
                await self.send_json(m.ack_reply(ref, created=saved))

    async def state_changed(self, event: dict) -> None:
        """Coalesce pushes: a burst of changes (five members submitting) shows the newest state once or twice,
        not once per change. The state after the last change is always shown."""
        covered = event.get("covered_by")
        if covered is not None and self._has_state(*covered):
            return  # the group's push, already here, shows this participant's change (a group's finish)
        shared = event.get("group")
        if event.get("lobby") is not None:
            self._lobby_pushed = event["lobby"]
        elif shared is None:
            self._must_read = True
        elif self._pushed is None or shared["id"] != self._pushed["id"] or shared["version"] > self._pushed["version"]:
            self._pushed = shared
        self._dirty = True
        if self._pushing is None or self._pushing.done():
            self._pushing = asyncio.ensure_future(self._push_loop())

    def _has_state(self, group_id: int, version: int) -> bool:
        """Whether this socket shows, or is about to show, that group's state at that version or newer."""
        pending, view = self._pushed, self._view
        return ((pending is not None and pending["id"] == group_id and pending["version"] >= version)
                or (view is not None and view.group_id == group_id and view.version >= version))

    async def _push_loop(self) -> None:
        while self._dirty:
            self._dirty = False
            must_read, self._must_read = self._must_read, False
            shared, self._pushed = self._pushed, None
            lobby, self._lobby_pushed = self._lobby_pushed, None
            try:
                if not must_read and shared is None and lobby is not None and self._view is not None:
                    snapshot = self._view.lobby_snapshot(lobby)
                    if snapshot is not None:
                        await self.send_json(snapshot)
                    continue  # a lobby count for a socket that no longer shows the lobby: nothing to show
                if not must_read and shared is not None and self._view is not None:
                    if not self._view.is_news(shared):
                        continue  # already shown (a database read got there first)
                    snapshot = self._view.snapshot(shared)
                    if snapshot is not None:
                        await self._follow(snapshot)  # a group just formed: its channel from now on
                        await self.send_json(snapshot)
                        continue
                await self.send_snapshot()
            except OSError:  # the client went away mid-send (uvicorn's ClientDisconnected is an OSError)
                logger.debug("participant %s disconnected during a push", self.participant_id)
                return
            except Exception:  # a lost push is repaired by the client's next ping
                logger.exception("push to participant %s failed", self.participant_id)
                return

    async def send_snapshot(self) -> None:
        snapshot = await read_snapshot(self.participant_id)
        self._view = PushView(self.participant_id, snapshot)
        await self._follow(snapshot)
        await self.send_json(snapshot)

    async def _follow(self, snapshot: dict) -> None:
        """Listen to the channels of what the snapshot shows: its group's, and the lobby's only while waiting."""
        group = snapshot.get("group")
        if group and group["id"] != self.group_id:
            self.group_id = group["id"]
            await self.channel_layer.group_add(realtime.group_channel(self.group_id), self.channel_name)
        # Lobby pushes matter only while waiting: a grouped socket left in the lobby channel would read a
        # snapshot on every arrival in the whole study (O(N^2) reads as a study fills).
        in_lobby = snapshot["participant"]["status"] == Participant.Status.LOBBY
        if in_lobby != self.in_lobby:
            self.in_lobby = in_lobby
            change = self.channel_layer.group_add if in_lobby else self.channel_layer.group_discard
            await change(realtime.lobby_channel(self.study_id), self.channel_name)

    async def send_json(self, content: dict) -> None:
        if content.get("type") == "snapshot":
            self._shown_version = content.get("version")
        await self.send(text_data=json.dumps(content))
