"""The simulated participants' protocol client: bots that use a running server exactly like a browser does.

A bot talks HTTP (httpx) and websockets (``websockets``) to a server URL. It opens the join link, posts the
consent form there with Django's CSRF token (the consent POST creates the participant; cookies kept), answers the
screening questions if the study asks any (``BotConfig.screening``; ``bots.pages`` reads the form), follows the
redirect to ``/p/TOKEN/``, opens ``/ws/p/TOKEN/`` with an ``Origin`` header, and then acts on every snapshot the way
``static/js/participant.js`` does: drafts while typing, then a submission per input phase, pings every
``ping_seconds`` with the snapshot version it shows, and reconnects with backoff when the socket drops. A bot may
drop out (close its socket and never return). When its status is final it reads the completion page, answering
the questionnaire first when the server sends it there.

What it writes and how it rates come from ``bots.sources`` and ``bots.policies``; how fast it moves from
``BotConfig`` (``think``: seconds per step; ``typing_pauses``: drafts per text, one per pause in typing, as the
page's debounce sends them).

Acknowledgements are counted honestly: every sent message carries a unique ``ref`` and only an
``ack`` whose ``ref`` matches something this bot sent (and is still waiting for) counts.

Used by ``manage.py run_bots``; ``run_bots`` below is the programmatic entry point.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import ssl
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from participants.standins import critique_text

from .pages import SCREENING_MODES, ScreeningError, page_errors, parse_form, questionnaire_choices, screening_choices
from .policies import make_scorer, rate
from .sources import opinion_source

FINAL_STATUSES = ("completed", "lobby_timeout", "dropped", "screened_out")
MAX_SCREENING_SUBMISSIONS = 12  # more than any question's attempts (at most 10): a page that never ends is a bug
INPUT_PHASES = ("opinion", "rating", "critique", "final_rating")
PING_SECONDS = 15.0
PROXY_UNAVAILABLE = (502, 504)  # a proxy's "upstream down / not answering": a person reloads


# --- configuration and results ------------------------------------------------------------------
@dataclass
class BotConfig:
    server: str
    study: str
    participants: int = 3
    dropout: float = 0.0
    seed: int | None = None
    think: tuple[float, float] = (1.0, 4.0)
    # "question", "polis:DIR" (DIR under ../shared/data/polis or a path), "persona" or "hidden:SEED"
    opinions: str = "question"
    # "random", "similarity", "embedding", "reward:CHECKPOINT_DIR" or "hidden:SEED" (participants/preferences.py:
    # each bot is a member of a population with hidden, consistent taste the system never sees)
    rating_policy: str = "similarity"
    # opinions="persona": the generation backend that writes them (get_backend(name, **options)).
    persona_backend: str = "embedded"
    persona_options: dict = field(default_factory=dict)
    persona_max_tokens: int = 60
    ping_seconds: float = PING_SECONDS
    # The typing model: drafts sent while writing a text or rating, one per pause (static/js/participant.js sends a
    # draft 1.2 s after typing stops, 0.8 s after a rating changes): a number drawn from MIN..MAX per step, each
    # with the text (or ratings) so far. With ``draft_on_submit`` the whole answer goes as a draft right before the
    # submission, as the page's Submit button does. (1, 1) without it is the fast load pace of old.
    typing_pauses: tuple[int, int] = (1, 1)
    draft_on_submit: bool = False
    timeout: float = 1800.0  # give up on a bot after this many seconds
    stagger: float = 0.2  # seconds between bot arrivals
    progress: bool = True
    run_id: str | None = None  # part of each bot's PROLIFIC_PID (defaults to a random hex)
    # The server's signed token that marks the bots as simulated participants (``participants.services.
    # simulated_join_token``; ``run_bots`` makes it). Empty: the bots join unmarked, like people.
    simulated_token: str = ""
    # A CA certificate file to trust for https/wss servers (a self-signed proxy, e.g. scripts/cluster's); empty:
    # the system's trust store.
    ca_file: str = ""
    # The screening questions (a study with any sends a consenting bot there before the lobby): "pass" chooses the
    # correct answers, "fail" a wrong one on every attempt (the bot expects the screened-out completion code),
    # "random" any. "pass" and "fail" need the answer key, question id -> correct option (the page never shows
    # it; ``run_bots`` loads it from the study); without it a bot that meets screening questions fails, saying so.
    screening: str = "pass"
    screening_answers: dict[int, str] = field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for https/wss: the CA file's, else the system's (httpx's default bundle)."""
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else httpx.create_ssl_context()


@dataclass
class KindCount:
    sent: int = 0
    acknowledged: int = 0  # ack replies whose ref matched a message this bot sent
    created: int = 0  # ... and said created=True (a new row was stored)
    rows: int = 0  # rows those created acks stand for (ratings: one per candidate)
    errors: int = 0  # error replies whose ref matched


@dataclass
class BotResult:
    index: int
    pid: str
    token: str | None = None
    status: str = "not_started"  # the last participant status the server showed (or "dropped" by choice)
    dropped_by_bot: bool = False
    drop_phase: str | None = None
    completion_code: str | None = None
    completion_page_code: str | None = None
    group_id: int | None = None
    screening_submissions: int = 0  # screening forms posted (one per attempt at the open questions)
    questionnaire: dict[str, Any] | None = None  # the questionnaire answers this bot submitted (field -> value)
    kinds: dict[str, KindCount] = field(default_factory=dict)
    error_codes: Counter = field(default_factory=Counter)
    unmatched_acks: int = 0
    reconnects: int = 0
    http_retries: int = 0  # page loads retried after the server went away (as a person would reload)
    snapshots: int = 0
    pongs: int = 0
    failure: str | None = None  # an exception that ended the bot early
    # Every submission this bot sent (drafts and pings left out), for comparing with the database:
    # {"ref", "kind", "group", "phase", "message", "outcome"}; outcome is "created" or "exists" (acked),
    # "error:CODE", "unanswered" (the socket dropped first), or "confirmed" (unanswered, but a later snapshot
    # showed this phase as submitted: the server stored it before the connection died).
    writes: list[dict] = field(default_factory=list)
    # Every socket that closed under the bot before it was finished, as epoch seconds (the machine's clock):
    # {"closed_at", "reconnected_at"}, the latter None while (or if never) reconnected. A failover's time is
    # measured from these (benchmarks/cluster.py: a killed web host to every bot back).
    reconnections: list[dict] = field(default_factory=list)
    # The local TCP port of every websocket the bot opened, in order: which server process held which socket
    # (tests/faults/test_asgi_kill.py matches them with the workers' connections).
    local_ports: list[int] = field(default_factory=list)

    def kind(self, name: str) -> KindCount:
        return self.kinds.setdefault(name, KindCount())




# --- one bot ------------------------------------------------------------------------------------
class Bot:
    def __init__(self, index: int, config: BotConfig, source, rng: random.Random, run_id: str, *,
                 tls: ssl.SSLContext | None = None):
        self.index = index
        self.config = config
        self.source = source
        self.rng = rng
        self.server = config.server.rstrip("/")
        parts = urlsplit(self.server)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.ws_base = ("wss://" if parts.scheme == "https" else "ws://") + parts.netloc
        self.tls = tls  # for wss (None: the websockets library's default context)
        self.result = BotResult(index=index, pid=f"bot-{run_id}-{index}")
        self.member_key = f"{run_id}:{index}"  # who this bot is in a hidden-preference population
        self.ref_counter = 0
        self.pending: dict[str, tuple[str, tuple, int]] = {}  # ref -> (kind, phase key, rows)
        self.done_keys: set[tuple] = set()  # phases this bot has submitted in (acked)
        self.failed: Counter = Counter()  # phase key -> error replies to submissions
        self.snapshot: dict | None = None
        self.ws = None
        self.action: asyncio.Task | None = None
        self.action_key: tuple | None = None
        self.opinion: str | None = None
        self.finished = asyncio.Event()
        self.drop_phase = rng.choice(INPUT_PHASES) if rng.random() < config.dropout else None
        self.result.drop_phase = self.drop_phase

    # -- HTTP ------------------------------------------------------------------------------------
    async def http(self, client: httpx.AsyncClient, method: str, url: str, *, patience: float = 60.0,
                   **kwargs) -> httpx.Response:
        """One page load, retried with backoff while the server is unreachable (restarting, say), the way a
        person reloads: no connection, or a proxy's 502/504 (its upstream down or not answering). Only for
        requests that are safe to repeat: the join link, consent (a second POST resumes the same row), the end
        page, the questionnaire (stored once) and the screening form (a repeat is at most one more attempt, as
        when a person presses Continue again). The application's own refusals (4xx, 503 with a message, a 500)
        are returned at once."""
        delay, deadline = 0.5, time.monotonic() + patience
        while True:
            try:
                response = await client.request(method, url, **kwargs)
                if response.status_code not in PROXY_UNAVAILABLE or time.monotonic() + delay > deadline:
                    return response
            except httpx.TransportError:
                if time.monotonic() + delay > deadline:
                    raise
            self.result.http_retries += 1
            await asyncio.sleep(delay * (0.5 + self.rng.random()))
            delay = min(delay * 2, 5.0)

    async def join(self, client: httpx.AsyncClient) -> None:
        params = {"PROLIFIC_PID": self.result.pid, "STUDY_ID": f"bots-{self.config.study}",
                  "SESSION_ID": f"{self.result.pid}-s"}
        if self.config.simulated_token:
            params["SIMULATED"] = self.config.simulated_token
        params = urlencode(params)
        response = await self.http(client, "GET", f"{self.server}/s/{self.config.study}/?{params}")
        response.raise_for_status()
        if 'name="consent"' in response.text:  # a newcomer: the consent POST (to the same link) creates the row
            csrf = client.cookies.get("csrftoken")
            if not csrf:
                raise RuntimeError("no csrftoken cookie on the consent page")
            digest = re.search(r'name="consent_sha256" value="([0-9a-f]{64})"', response.text)
            page_url = str(response.url)
            response = await self.http(client, "POST", page_url, data={
                "csrfmiddlewaretoken": csrf, "consent": "yes", "consent_sha256": digest.group(1) if digest else ""},
                headers={"Referer": page_url, "Origin": self.origin})
            response.raise_for_status()
            if 'name="consent"' in response.text:
                raise RuntimeError("consent was not accepted")
        match = re.search(r"/p/([^/]+)/(screening/)?$", response.url.path)
        if not match:
            raise RuntimeError(f"join did not lead to a participant page: {response.url}")
        self.result.token = match.group(1)
        if match.group(2):
            await self.screen(client, response)
        elif self.config.screening == "fail":
            raise ScreeningError("screening='fail', but the study asked no screening questions: the bot went "
                                 "straight to the lobby")

    def _form_headers(self, url: str) -> dict[str, str]:
        return {"Referer": url, "Origin": self.origin}

    async def screen(self, client: httpx.AsyncClient, response: httpx.Response) -> None:
        """Answer the screening page until it lets the bot into the lobby (its page) or screens it out (the
        completion page, read here: a screened-out participant never opens the websocket)."""
        mode = self.config.screening
        while response.url.path.endswith("/screening/"):
            if self.result.screening_submissions >= MAX_SCREENING_SUBMISSIONS:
                raise ScreeningError(f"still on the screening page after {MAX_SCREENING_SUBMISSIONS} submissions")
            form = parse_form(response.text)
            choices = screening_choices(form, mode, self.config.screening_answers, self.rng)
            await self.think(0.5)  # reads the questions
            url = str(response.url)
            response = await self.http(client, "POST", url, data={**form.hidden, **choices},
                                       headers=self._form_headers(url))
            self.result.screening_submissions += 1
            if response.status_code == 400:
                raise ScreeningError(f"the screening form was refused: {page_errors(response.text)}")
            response.raise_for_status()
        if response.url.path.endswith("/complete/"):
            self.result.status = "screened_out"
            self.read_completion_code(response)
            self.result.completion_code = self.result.completion_page_code
            if mode == "pass":
                raise ScreeningError("screened out although screening='pass' chose the correct answers")
        elif mode == "fail":
            raise ScreeningError(f"screening='fail' answered wrongly, yet the server let the bot on to "
                                 f"{response.url.path}")

    def read_completion_code(self, response: httpx.Response) -> None:
        match = re.search(r'id="completion-code">([^<]*)<', response.text)
        self.result.completion_page_code = match.group(1) if match else None

    async def read_completion_page(self, client: httpx.AsyncClient) -> None:
        response = await self.http(client, "GET", f"{self.server}/p/{self.result.token}/complete/")
        if response.url.path.endswith("/questionnaire/"):  # completed, and the study has a questionnaire
            response = await self.answer_questionnaire(client, response)
        self.read_completion_code(response)

    async def answer_questionnaire(self, client: httpx.AsyncClient, response: httpx.Response) -> httpx.Response:
        form = parse_form(response.text)
        choices = questionnaire_choices(form, self.rng)
        await self.think()  # a page of questions
        url = str(response.url)
        response = await self.http(client, "POST", url, data={**form.hidden, **choices},
                                   headers=self._form_headers(url))
        if response.status_code == 400:
            raise RuntimeError(f"the questionnaire was refused: {page_errors(response.text)}")
        response.raise_for_status()
        self.result.questionnaire = choices
        return response

    # -- websocket -------------------------------------------------------------------------------
    async def send(self, message: dict, kind: str | None = None, key: tuple | None = None, rows: int = 0) -> str:
        self.ref_counter += 1
        ref = f"b{self.index}-{self.ref_counter}"
        message = {**message, "ref": ref}
        if kind is not None:
            self.pending[ref] = (kind, key, rows)
        if key is not None:
            self.result.writes.append({"ref": ref, "kind": kind, "group": key[0], "phase": key[1],
                                       "message": message, "outcome": "unanswered"})
        await self.ws.send(json.dumps(message))
        if kind is not None:
            self.result.kind(kind).sent += 1
        return ref

    async def run(self, client: httpx.AsyncClient) -> BotResult:
        try:
            await self.join(client)
            if self.result.status == "screened_out":  # screening ended it: no lobby, no socket
                return self.result
            await asyncio.wait_for(self.socket_loop(), self.config.timeout)
            if self.result.status in FINAL_STATUSES and not self.result.dropped_by_bot:
                await self.read_completion_page(client)
        except Exception as exc:  # a bot's failure is reported, never raised into the others
            self.result.failure = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            self.cancel_action()
        return self.result

    async def socket_loop(self) -> None:
        delay = 0.5
        first = True
        while not self.finished.is_set():
            if not first:
                self.result.reconnects += 1
            first = False
            closed_at = None
            try:
                tls = {"ssl": self.tls} if self.tls is not None and self.ws_base.startswith("wss") else {}
                async with ws_connect(f"{self.ws_base}/ws/p/{self.result.token}/", origin=self.origin, **tls,
                                      proxy=None, open_timeout=15, max_size=2 ** 22) as ws:
                    self.ws = ws
                    delay = 0.5
                    if isinstance(ws.local_address, tuple):  # (host, port, ...) on TCP
                        self.result.local_ports.append(ws.local_address[1])
                    self._reconnected(time.time())
                    pinger = asyncio.create_task(self.pinger())
                    try:
                        async for raw in ws:
                            await self.on_message(raw)
                            if self.finished.is_set():
                                break
                    finally:
                        closed_at = time.time()  # the socket stopped delivering (closed, or the bot is done)
                        pinger.cancel()
                        self.cancel_action()
            except InvalidStatus as exc:
                if exc.response.status_code < 500:  # refused (e.g. 403): retrying will not help
                    raise
                # 5xx: the server failed mid-handshake (its database restarting, say); try again like a browser
            # InvalidMessage: no valid HTTP answer to the handshake (a server that died or is restarting).
            except (TimeoutError, ConnectionClosed, OSError, InvalidMessage) as exc:
                if getattr(getattr(exc, "rcvd", None), "code", None) == 4404:
                    raise RuntimeError("server refused the token (4404)") from None
            if self.finished.is_set():
                break
            if closed_at is not None:
                self.result.reconnections.append({"closed_at": round(closed_at, 3), "reconnected_at": None})
            # Unacknowledged messages died with the socket; the next snapshot tells what was stored.
            self.pending.clear()
            await asyncio.sleep(delay * (0.5 + self.rng.random()))
            delay = min(delay * 2, 10.0)

    def _reconnected(self, at: float) -> None:
        if self.result.reconnections and self.result.reconnections[-1]["reconnected_at"] is None:
            self.result.reconnections[-1]["reconnected_at"] = round(at, 3)

    async def pinger(self) -> None:
        while True:
            await asyncio.sleep(self.config.ping_seconds)
            with contextlib.suppress(ConnectionClosed):
                await self.send({"type": "ping", "version": (self.snapshot or {}).get("version")})

    def cancel_action(self) -> None:
        if self.action and not self.action.done():
            self.action.cancel()
        self.action, self.action_key = None, None

    async def on_message(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        await self.on_parsed(message)

    async def on_parsed(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "snapshot":
            self.result.snapshots += 1
            await self.on_snapshot(message)
        elif kind == "ack":
            entry = self.pending.pop(message.get("ref"), None)
            if entry is None:
                self.result.unmatched_acks += 1
                return
            name, key, rows = entry
            counts = self.result.kind(name)
            counts.acknowledged += 1
            self._log_outcome(message.get("ref"), "created" if message.get("created") else "exists")
            if message.get("created"):
                counts.created += 1
                counts.rows += rows
            if key is not None:
                self.done_keys.add(key)
        elif kind == "error":
            self.result.error_codes[message.get("code") or "?"] += 1
            entry = self.pending.pop(message.get("ref"), None)
            if entry is not None:
                name, key, _ = entry
                self.result.kind(name).errors += 1
                self._log_outcome(message.get("ref"), f"error:{message.get('code') or '?'}")
                if key is not None:
                    self.failed[key] += 1
                    if self.action_key == key:
                        self.action, self.action_key = None, None  # let the next snapshot retry
                        self._retry_soon()
        elif kind == "pong":
            self.result.pongs += 1

    def _retry_soon(self) -> None:
        """A browser re-enables the submit button after an error reply (say the database was restarting) and
        the person presses it again a moment later; the next snapshot may never come if nothing changed."""
        async def retry() -> None:
            await self.think()
            if not self.finished.is_set() and self.action is None and self.snapshot is not None:
                await self.on_snapshot(self.snapshot)

        self.retry_task = asyncio.create_task(retry())

    def _log_outcome(self, ref: str | None, outcome: str) -> None:
        for write in reversed(self.result.writes):
            if write["ref"] == ref:
                write["outcome"] = outcome
                return

    def _log_confirmed(self, key: tuple) -> None:
        for write in reversed(self.result.writes):
            if (write["group"], write["phase"]) == key:
                if write["outcome"] == "unanswered":
                    write["outcome"] = "confirmed"
                return

    async def on_snapshot(self, snap: dict) -> None:
        self.snapshot = snap
        status = snap["participant"]["status"]
        self.result.status = status
        group = snap.get("group")
        if group:
            self.result.group_id = group["id"]
        if status in FINAL_STATUSES:
            self.result.completion_code = snap["participant"].get("completion_code")
            self.finish()
            return
        if not group or group["phase"] not in INPUT_PHASES:
            return
        key = (group["id"], group["phase"])
        if group["phase"] == self.drop_phase:
            if self.action_key != key:
                self.cancel_action()
                self.action_key = key
                self.action = asyncio.create_task(self.drop_out())
            return
        if group["submitted"] and not any(k == key for _, k, _ in self.pending.values()):
            self._log_confirmed(key)
        if group["submitted"] or key in self.done_keys or self.failed[key] >= 3:
            return
        if self.action_key == key and self.action and not self.action.done():
            return
        if any(k == key for _, k, _ in self.pending.values()):
            return
        self.cancel_action()
        self.action_key = key
        self.action = asyncio.create_task(self.act(group, snap["study"]["max_text_chars"], key))

    def finish(self) -> None:
        self.cancel_action()
        self.finished.set()

    async def think(self, share: float = 1.0) -> None:
        low, high = self.config.think
        await asyncio.sleep(self.rng.uniform(low, high) * share)

    async def drop_out(self) -> None:
        await self.think(0.5)
        self.result.dropped_by_bot = True
        self.result.status = "dropped"
        self.finished.set()
        with contextlib.suppress(Exception):
            await self.ws.close()

    def typing_pause_count(self) -> int:
        low, high = self.config.typing_pauses
        return low if low >= high else self.rng.randint(low, high)

    async def act(self, group: dict, max_chars: int, key: tuple) -> None:
        """One step: read, type (a draft at each pause), pause, submit. The step takes one think time in all."""
        phase = group["phase"]
        retry = self.failed[key] > 0
        pauses = max(1, self.typing_pause_count())
        await self.think(0.5 / pauses)
        if phase in ("opinion", "critique"):
            if phase == "opinion":
                if self.opinion is None or retry:
                    if getattr(self.source, "per_member", False):
                        self.opinion = self.source.opinion_for(self.member_key, group["question"], self.rng)
                    elif getattr(self.source, "blocking", False):  # a model writes it: keep the loop free
                        self.opinion = await asyncio.to_thread(self.source.opinion, group["question"], self.rng)
                    else:
                        self.opinion = self.source.opinion(group["question"], self.rng)
                text = self.opinion
            else:
                text = critique_text((group.get("winner") or {}).get("text", ""), self.opinion or "", self.rng)
            text = text[:max_chars] if not retry else text[: max(20, max_chars // 2)]
            for pause in range(1, pauses + 1):  # what was typed by each pause
                if pause > 1:
                    await self.think(0.5 / pauses)
                typed = text[: max(1, len(text) * pause // (pauses + 1))]
                await self.send({"type": "draft", "phase": phase, "text": typed}, "draft")
            await self.think(0.5)
            if self.config.draft_on_submit:
                await self.send({"type": "draft", "phase": phase, "text": text}, "draft")
            await self.send({"type": f"submit_{phase}", "text": text}, phase, key, 1)
            if phase == "opinion" and self.opinion is not None:
                self.opinion = text
        else:
            candidates = group.get("candidates") or []
            if not candidates:
                return
            if self.config.rating_policy in ("random", "similarity") or self.config.rating_policy.startswith("hidden"):
                ratings, ranking = rate(candidates, self.opinion or group["question"], self.config.rating_policy,
                                        self.rng, question=group["question"], member_key=self.member_key)
            else:  # a model scores them: keep the event loop (every other bot's socket) free meanwhile
                ratings, ranking = await asyncio.to_thread(
                    rate, candidates, self.opinion or group["question"], self.config.rating_policy, self.rng,
                    question=group["question"])
            draft = {str(r["candidate_id"]): {"agreement": r["agreement"], "quality": r["quality"]} for r in ratings}
            for pause in range(1, pauses + 1):  # the candidates rated by each pause
                if pause > 1:
                    await self.think(0.5 / pauses)
                done = dict(list(draft.items())[: max(1, -(-len(draft) * pause // pauses))])
                await self.send({"type": "draft", "phase": phase, "ratings": done, "ranking": ranking}, "draft")
            await self.think(0.5)
            if self.config.draft_on_submit:
                await self.send({"type": "draft", "phase": phase, "ratings": draft, "ranking": ranking}, "draft")
            await self.send({"type": "submit_ratings", "round": group["round"], "ratings": ratings,
                             "ranking": ranking}, phase, key, len(ratings))


# --- many bots ----------------------------------------------------------------------------------
def summarize(results: list[BotResult], config: BotConfig, seconds: float) -> dict[str, Any]:
    statuses = Counter(r.status for r in results)
    kinds: dict[str, dict[str, int]] = {}
    for r in results:
        for name, counts in r.kinds.items():
            total = kinds.setdefault(name, {"sent": 0, "acknowledged": 0, "created": 0, "rows": 0, "errors": 0})
            for attr, value in asdict(counts).items():
                total[attr] += value
    errors = Counter()
    for r in results:
        errors.update(r.error_codes)
    return {
        "server": config.server,
        "study": config.study,
        "participants_started": len(results),
        "completed": statuses.get("completed", 0),
        "dropped": statuses.get("dropped", 0),
        "dropped_by_bots": sum(r.dropped_by_bot for r in results),
        "lobby_timeout": statuses.get("lobby_timeout", 0),
        "screened_out": statuses.get("screened_out", 0),
        "questionnaires": sum(1 for r in results if r.questionnaire is not None),
        "unfinished": sum(1 for r in results if r.status not in FINAL_STATUSES),
        "writes_sent": sum(k["sent"] for k in kinds.values()),
        "writes_acknowledged": sum(k["acknowledged"] for k in kinds.values()),
        "errors_received": sum(errors.values()),
        "error_codes": dict(errors),
        "unmatched_acks": sum(r.unmatched_acks for r in results),
        "by_kind": kinds,
        "reconnects": sum(r.reconnects for r in results),
        "http_retries": sum(r.http_retries for r in results),
        "failures": [f"bot {r.index}: {r.failure}" for r in results if r.failure],
        "completion_codes": dict(Counter(r.completion_code for r in results if r.completion_code)),
        "seconds": round(seconds, 1),
        "bots": [{"index": r.index, "pid": r.pid, "token": r.token, "status": r.status, "group_id": r.group_id,
                  "dropped_by_bot": r.dropped_by_bot, "drop_phase": r.drop_phase,
                  "completion_code": r.completion_code, "completion_page_code": r.completion_page_code,
                  "screening_submissions": r.screening_submissions, "questionnaire": r.questionnaire,
                  "by_kind": {k: asdict(v) for k, v in r.kinds.items()}, "errors": dict(r.error_codes),
                  "reconnects": r.reconnects, "reconnections": r.reconnections, "http_retries": r.http_retries,
                  "local_ports": r.local_ports, "writes": r.writes} for r in results],
    }


async def run_bots_async(config: BotConfig) -> dict[str, Any]:
    if config.screening not in SCREENING_MODES:
        raise ValueError(f"unknown screening mode {config.screening!r}: use one of {', '.join(SCREENING_MODES)}")
    master = random.Random(config.seed)
    run_id = config.run_id or f"{master.getrandbits(32):08x}"
    source = opinion_source(config.opinions, persona_backend=config.persona_backend,
                            persona_options=config.persona_options, persona_max_tokens=config.persona_max_tokens)
    make_scorer(config.rating_policy)  # load the rating model (or refuse the policy) before any bot starts
    started = time.monotonic()
    bar = None
    if config.progress:
        from tqdm import tqdm

        bar = tqdm(total=config.participants, desc="bots", unit="bot", file=sys.stderr)
    limits = httpx.Limits(max_connections=max(10, config.participants * 2))
    # One TLS context for every bot: building one loads the CA bundle (~40 ms of CPU), which per bot was nearly all
    # of a bot process's CPU in benchmarks/load.py --profile-bots. Each bot keeps a client of its own (its cookies).
    tls = config.ssl_context()

    async def one(index: int) -> BotResult:
        await asyncio.sleep(index * config.stagger)
        rng = random.Random(f"{config.seed}:{run_id}:{index}")
        async with httpx.AsyncClient(follow_redirects=True, timeout=30, trust_env=False, limits=limits, verify=tls,
                                     headers={"User-Agent": "deliberation-bot/1.0"}) as client:
            result = await Bot(index, config, source, rng, run_id, tls=tls).run(client)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"last: {result.status}")
        return result

    try:
        results = await asyncio.gather(*(one(i) for i in range(config.participants)))
    finally:
        if bar is not None:
            bar.close()
    return summarize(list(results), config, time.monotonic() - started)


def run_bots(config: BotConfig) -> dict[str, Any]:
    """Run ``config.participants`` bots to the end and return the summary (blocking)."""
    return asyncio.run(run_bots_async(config))


def parse_think(value: str) -> tuple[float, float]:
    low, _, high = value.partition(":")
    low_f = float(low)
    high_f = float(high) if high else low_f
    if low_f < 0 or high_f < low_f:
        raise ValueError("--think takes MIN:MAX seconds with 0 <= MIN <= MAX")
    return low_f, high_f


def parse_typing_pauses(value: str) -> tuple[int, int]:
    low, _, high = value.partition(":")
    try:
        low_i = int(low)
        high_i = int(high) if high else low_i
    except ValueError:
        raise ValueError("--typing-pauses takes MIN:MAX whole numbers of drafts, like 2:5") from None
    if low_i < 1 or high_i < low_i or high_i > 50:
        raise ValueError("--typing-pauses takes MIN:MAX drafts with 1 <= MIN <= MAX <= 50")
    return low_i, high_i
