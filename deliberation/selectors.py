"""Reads: the snapshot a participant's page renders from. One path for consumers, views and tests. Also the arm
an offline tool generates with (``study_arm``).

A snapshot holds everything the page needs, so a client that reconnects, reloads or
opens a second tab shows exactly where the participant is. It never contains another
member's texts or identity: members appear as numbered seats.
"""
from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Exists, JSONField, Max, OuterRef, Subquery
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone, translation

from core import flow
from core.flow import Phase
from core.prepared import Prepared
from core.seeds import derive_seed
from participants.consent import opinion_notice
from participants.models import Participant, Presence
from participants.presence import live_participants

from .models import Candidate, Critique, Draft, Group, Opinion, Rating, Study, StudyArm

PROLIFIC_COMPLETE_URL = "https://app.prolific.com/submissions/complete?cc={code}"


# --- who is here, who has answered (also read by services.group_state) -------------------------------
def connected_participant_ids(participant_ids: list[int], now: datetime) -> set[int]:
    """Who has an open socket that pinged within the timeout (participants.presence; pings live in Redis)."""
    rows = dict(Presence.objects.filter(participant_id__in=participant_ids).values("participant_id")
                .annotate(seen=Max("last_seen")).values_list("participant_id", "seen"))
    return live_participants(rows, now)


def _answers(group: Group, phase: Phase):
    """The answers that count as submitted in ``phase`` (None outside the input phases)."""
    if phase is Phase.OPINION:
        return Opinion.objects.filter(group=group)
    if phase in (Phase.RATING, Phase.FINAL_RATING):
        return Rating.objects.filter(group=group, round=flow.round_of(phase), by_timeout=False)
    if phase is Phase.CRITIQUE:
        return Critique.objects.filter(group=group)
    return None


@dataclass(frozen=True)
class MemberRow:
    id: int
    position: int
    status: str
    taken_over: bool
    submitted: bool  # in the group's current phase
    draft: Any  # their draft of the current phase (None)
    answered: bool  # has the answer the caller asked about (``group_members(answered=...)``)
    draft_id: int | None = None  # that draft's row (None: no draft); a deadline stores drafts in this order


@dataclass(frozen=True)
class MembersRead:
    """Everything about a group's members a change needs, from one query (and one Redis read for old rows)."""

    rows: list[MemberRow]
    connected: set[int]

    @property
    def submitted(self) -> set[int]:
        return {r.id for r in self.rows if r.submitted}

    def row(self, participant_id: int) -> MemberRow | None:
        return next((r for r in self.rows if r.id == participant_id), None)


def _answered_rows(kind: str, group_id: int):
    """A submission's own kind of answer in the group: "opinion", "critique", "rating1" or "rating2"."""
    if kind.startswith("rating"):
        return Rating.objects.filter(group_id=group_id, round=int(kind[len("rating"):]))
    return {"opinion": Opinion, "critique": Critique}[kind].objects.filter(group_id=group_id)


def _members_query(phase: Phase, answered: str | None) -> Prepared:
    """The members' read for a phase and an answer kind: one shape each, compiled once per process."""
    key = (phase, answered)
    prepared = _MEMBERS.get(key)
    if prepared is None:
        def build(group_id: int):
            group = Group(pk=group_id, phase=phase.value)
            mine = OuterRef("pk")
            rows = Participant.objects.filter(group_id=group_id).order_by("position").annotate(
                seen=Subquery(Presence.objects.filter(participant=mine).order_by("-last_seen")
                              .values("last_seen")[:1]))
            answers = _answers(group, phase)
            if answers is not None:
                rows = rows.annotate(submitted=Exists(answers.filter(participant=mine)))
            if phase in flow.INPUT_PHASES:
                drafts = Draft.objects.filter(group_id=group_id, participant=mine, phase=phase.value)
                rows = rows.annotate(draft=Subquery(drafts.values("payload")[:1], output_field=JSONField()),
                                     draft_id=Subquery(drafts.values("pk")[:1]))
            if answered is not None:
                rows = rows.annotate(answered=Exists(_answered_rows(answered, group_id).filter(participant=mine)))
            fields = ["id", "position", "status", "taken_over_at", "seen"] + \
                [f for f, on in (("submitted", answers is not None), ("draft", phase in flow.INPUT_PHASES),
                                 ("draft_id", phase in flow.INPUT_PHASES), ("answered", answered is not None)) if on]
            return rows.values(*fields)

        prepared = _MEMBERS.setdefault(key, Prepared(build, group_id=int))
    return prepared


_MEMBERS: dict[tuple[Phase, str | None], Prepared] = {}


def group_members(group: Group, now: datetime, *, answered: str | None = None) -> MembersRead:
    """One query: each member's seat and status, whether they submitted in the current phase, their draft of it
    and their newest presence row; ``answered``: a kind of answer ("opinion", "critique", "rating1", "rating2")
    whose existence per member is returned too (a submission's check for an earlier answer). Compiled once per
    (phase, kind) and process (core.prepared): every submission, deadline and presence change runs it."""
    if answered is not None and answered not in ("opinion", "critique", "rating1", "rating2"):
        raise ValueError(f"unknown answer kind {answered!r}")
    values = _members_query(Phase(group.phase), answered).rows(group_id=group.pk)
    members = [MemberRow(v["id"], v["position"], v["status"], v["taken_over_at"] is not None,
                         v.get("submitted", False), v.get("draft"), v.get("answered", False), v.get("draft_id"))
               for v in values]
    return MembersRead(members, live_participants({v["id"]: v["seen"] for v in values}, now))


def submitted_participant_ids(group: Group) -> set[int]:
    answers = _answers(group, Phase(group.phase))
    return set(answers.values_list("participant_id", flat=True)) if answers is not None else set()


def completion_url(participant: Participant) -> str | None:
    code = participant.completion_code
    if participant.study.prolific_redirect and code:
        return PROLIFIC_COMPLETE_URL.format(code=code)
    return None


def snapshot_version(status: str, group_id: int | None, group_version: int | None) -> str:
    """What a client shows, as one comparable string: its status and its group's version (0 without a group)."""
    return f"{status}:{group_id or 0}:{group_version or 0}"


def version_of_group(version: str) -> int:
    return int(version.rsplit(":", 1)[1])


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _candidate_order(candidates: list[list], participant_id: int) -> list[list]:
    """A fixed, per-participant random order of ``[id, text]`` rows, so position bias averages out."""
    rng = random.Random(derive_seed(participant_id, "order", *(cid for cid, _ in candidates)))
    ordered = list(candidates)
    rng.shuffle(ordered)
    return ordered


# The study fields Study.text_use() reads (what the opinion page says about who sees the text).
TEXT_USE_FIELDS = ("opinions_as_candidates", "generation_backend", "generation_base_url", "leave_one_out_share",
                   "bot_takeover", "best_of_n")


def _in_language(language: str, function, *args):
    """A text the snapshot carries, in the study's language whoever reads the snapshot (the socket, a test, a
    command)."""
    with translation.override(language):
        return function(*args)


def _snapshot_row(pk: int):
    mine = {"group_id": OuterRef("group_id"), "participant_id": OuterRef("pk")}
    return (Participant.objects.select_related("study", "group")
            .only("id", "status", "position", "completion_code", "lobby_entered_at", "study_id", "group_id",
                  *(f"study__{f}" for f in ("title", "language", "max_text_chars", "prolific_redirect",
                                            "min_group_size", "max_group_size", "lobby_timeout_seconds",
                                            *TEXT_USE_FIELDS)),
                  "group__id", "group__version", "group__phase")
            .annotate(my_opinion=Subquery(Opinion.objects.filter(**mine).values("text")[:1]),
                      my_critique=Subquery(Critique.objects.filter(**mine).values("text")[:1]),
                      my_draft=Subquery(Draft.objects.filter(**mine, phase=OuterRef("group__phase"))
                                        .values("payload")[:1], output_field=JSONField()))
            .filter(pk=pk))


# Compiled once per process (core.prepared): every connect, reload and unsafe push reads it.
_SNAPSHOT_ROW = Prepared(_snapshot_row, pk=int)


_LOBBY_COUNT = Prepared(lambda study_id, status: Participant.objects.filter(study_id=study_id, status=status)
                        .order_by().values("study_id").annotate(n=Count("id")).values_list("n", flat=True),
                        study_id=int, status=str)
_OWN_RATINGS = Prepared(lambda group_id, participant_id, round: Rating.objects.filter(
    group_id=group_id, participant_id=participant_id, round=round).values_list("candidate_id", "agreement", "quality",
                                                                               "rank"),
    group_id=int, participant_id=int, round=int)

# The opinion page's notice of what the study may do with a text (``Study.text_use``: the study and all its
# arms), per study and process for NOTICE_TTL_SECONDS: every snapshot shows it, and it reads every arm. Saving a
# study or an arm in this process forgets it at once; elsewhere (the admin's process) it is at most that old.
NOTICE_TTL_SECONDS = 10.0
_notices: dict[int, tuple[float, tuple, str]] = {}


def study_opinion_notice(study: Study) -> str:
    """The notice in the study's language; ``study`` needs its language and ``TEXT_USE_FIELDS`` loaded."""
    key = (study.language, *(getattr(study, f) for f in TEXT_USE_FIELDS))
    hit = _notices.get(study.pk)
    if hit is not None and hit[1] == key and time.monotonic() - hit[0] <= NOTICE_TTL_SECONDS:
        return hit[2]
    notice = _in_language(study.language, opinion_notice, study.text_use())
    if len(_notices) >= _SHARED_MAX:
        _notices.clear()
    _notices[study.pk] = (time.monotonic(), key, notice)
    return notice


@receiver([post_save, post_delete], sender=StudyArm, dispatch_uid="deliberation.selectors.arm_changed")
@receiver([post_save, post_delete], sender=Study, dispatch_uid="deliberation.selectors.study_changed")
def _forget_notice(sender, instance, **kwargs) -> None:
    _notices.pop(instance.study_id if sender is StudyArm else instance.pk, None)


def participant_snapshot(participant: Participant, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    # One query for the participant, their study, their group's version and their own texts; the group's
    # shared part comes from the per-version cache (a push has usually just put it there) or one more read.
    participant = _SNAPSHOT_ROW.one(pk=participant.pk)
    study = participant.study
    group = participant.group
    shared = None
    if group is not None:
        shared = _cached_shared(group.pk, group.version) or read_group_shared_state(group.pk, now)
    snapshot: dict[str, Any] = {
        "type": "snapshot",
        "version": snapshot_version(participant.status, shared and shared["id"], shared and shared["version"]),
        "server_time": _iso(now),
        "study": {"title": study.title, "max_text_chars": study.max_text_chars,
                  "opinion_notice": study_opinion_notice(study)},
        "participant": {
            "status": participant.status,
            "position": participant.position,
            "completion_code": participant.completion_code if participant.is_finished else None,
            "completion_url": completion_url(participant) if participant.is_finished else None,
        },
        "lobby": None,
        "group": None,
    }
    if participant.status == Participant.Status.LOBBY:
        waiting = _LOBBY_COUNT.first(study_id=study.pk, status=Participant.Status.LOBBY.value) or 0
        snapshot["lobby"] = {"waiting": waiting, "min_group_size": study.min_group_size,
                             "max_group_size": study.max_group_size, "timeout_seconds": study.lobby_timeout_seconds,
                             "entered_at": _iso(participant.lobby_entered_at)}
    if shared is not None:
        phase = Phase(shared["phase"])
        own = {"opinion": participant.my_opinion, "critique": participant.my_critique,
               "draft": participant.my_draft if shared["phase"] == group.phase else None, "ratings": None}
        if phase in (Phase.RATING, Phase.FINAL_RATING):
            rows = _OWN_RATINGS.rows(group_id=group.pk, participant_id=participant.pk, round=flow.round_of(phase))
            own["ratings"] = {str(cid): {"agreement": a, "quality": q, "rank": r} for cid, a, q, r in rows} or None
        snapshot["group"] = _group_part(participant.pk, shared, own, now)
    return snapshot


# --- the shared group state: built once per change, carried by the push -----------------------------------
# Everything a group's members see alike: phase, deadline, question, seats (with each member's status),
# presence, who has submitted, the round's candidates, the winner. It is JSON-safe (it travels through the
# channel layer), keyed by the group's version (every committed change bumps it) and kept per process for a
# moment, so the members' snapshot reads after one change share one set of queries. Presence (who is
# connected) is not versioned by time-outs: the entry lives SHARED_TTL_SECONDS, and a push refreshes it.
SHARED_TTL_SECONDS = 1.0
_SHARED_MAX = 4096
_shared: dict[tuple[int, int], tuple[float, dict[str, Any]]] = {}
_shared_lock = threading.Lock()


def _cached_shared(group_id: int, version: int) -> dict[str, Any] | None:
    with _shared_lock:
        hit = _shared.get((group_id, version))
    return hit[1] if hit is not None and time.monotonic() - hit[0] <= SHARED_TTL_SECONDS else None


def group_shared_state(group: Group, now: datetime | None = None, *, cache: bool = True) -> dict[str, Any]:
    """The members' common part of a snapshot (``group`` loaded with its question and winners), read from the
    database; cached per (group, version) for a moment. Inside a transaction (which may still roll back) pass
    ``cache=False``: the push caches it after the commit."""
    now = now or timezone.now()
    key, clock = (group.pk, group.version), time.monotonic()
    hit = _cached_shared(*key) if cache else None
    if hit is not None:
        return hit
    members = [list(row) for row in group.members.order_by("position").values_list("id", "position", "status")]
    shared = _shared_state(group, members, connected_participant_ids([pid for pid, _, _ in members], now),
                           submitted_participant_ids(group))
    if cache:
        _remember(shared, clock)
    return shared


def shared_state_from(group: Group, read: MembersRead, *, submitted: set[int],
                      candidates: list[Candidate] | None = None, statuses: dict[int, str] | None = None
                      ) -> dict[str, Any]:
    """The shared state from what a service already read under the group's lock (``group_members``) and what it
    changed since: ``submitted``, who counts as submitted in the group's phase now (the read's plus what the
    service stored; nobody in a phase just entered); the round's shown candidates it loaded, if any (else read
    here when the phase shows them); ``statuses``, members' statuses it wrote (a finished group). Built inside
    the transaction and pushed after the commit (``realtime.push_after_commit(states=...)``)."""
    statuses = statuses or {}
    members = [[r.id, r.position, statuses.get(r.id, r.status)] for r in read.rows]
    rows = None if candidates is None else [[c.pk, c.text] for c in sorted(candidates, key=lambda c: c.index)]
    return _shared_state(group, members, read.connected, set(submitted), rows)


def shared_state_formed(group: Group, participant_ids: tuple[int, ...] | list[int]) -> dict[str, Any]:
    """The shared state of a group just formed from these lobby members (all connected: only they are grouped,
    in this order of positions), built in the forming transaction from what it wrote."""
    members = [[pid, position, Participant.Status.IN_GROUP.value]
               for position, pid in enumerate(participant_ids, start=1)]
    return _shared_state(group, members, set(participant_ids), set(), [])


def _shared_state(group: Group, members: list[list], connected: set[int], submitted: set[int],
                  candidates: list[list] | None = None) -> dict[str, Any]:
    phase = Phase(group.phase)
    shared: dict[str, Any] = {
        "id": group.pk,
        "version": group.version,
        "phase": phase.value,
        "deadline": _iso(group.deadline),
        "phase_started_at": _iso(group.phase_started_at),
        # The study is paused (deliberation/pause.py): the deadline is cleared and this is the time left.
        "paused_seconds_left": (int(group.paused_seconds_left) if group.paused_seconds_left is not None else None),
        "generation_error": bool(group.generation_status),
        "outcome": group.outcome or None,
        "question": group.question.text,
        "members": members,
        "connected": sorted(connected),
        "submitted": sorted(submitted),
        "candidates": [],
        "winner": None,
    }
    if phase in (Phase.RATING, Phase.FINAL_RATING):
        shared["candidates"] = candidates if candidates is not None else [list(row) for row in Candidate.objects.filter(
            group=group, round=flow.round_of(phase), shown=True).order_by("index").values_list("id", "text")]
    winner = group.winner_round2 if phase is Phase.DONE and group.winner_round2_id else group.winner_round1
    if phase in (Phase.CRITIQUE, Phase.REVISING, Phase.FINAL_RATING, Phase.DONE) and winner is not None:
        shared["winner"] = {"id": winner.pk, "text": winner.text, "round": winner.round}
    if phase is Phase.DONE:
        # For the members' sockets to show a finished member's page without a read (``PushView``). It stays on
        # the server: a snapshot shows a member the code of their own status only, once they are finished.
        study = group.study
        shared["completion"] = {"codes": {status: study.completion_code(status) for status in FINISHED_IN_GROUP},
                                "prolific": bool(study.prolific_redirect)}
    return shared


def _remember(shared: dict[str, Any], clock: float | None = None) -> None:
    with _shared_lock:
        if len(_shared) >= _SHARED_MAX:
            _shared.clear()
        _shared[(shared["id"], shared["version"])] = (clock if clock is not None else time.monotonic(), shared)


def remember_shared_state(shared: dict[str, Any]) -> None:
    """A committed group state (a push's): the members' snapshot reads that follow it need not read it again."""
    _remember(shared)


def read_group_shared_state(group_id: int, now: datetime | None = None) -> dict[str, Any] | None:
    group = (Group.objects.select_related("question", "winner_round1", "winner_round2", "study")
             .filter(pk=group_id).first())
    return group_shared_state(group, now) if group is not None else None


def _group_part(participant_id: int, shared: dict[str, Any], own: dict[str, Any], now: datetime) -> dict[str, Any]:
    """One member's view of the shared state plus their own texts (``own``: opinion, critique, draft of the
    current phase, ratings of the current round). Pure: the database path and the push path both end here."""
    phase = Phase(shared["phase"])
    connected, submitted = set(shared["connected"]), set(shared["submitted"])
    deadline = datetime.fromisoformat(shared["deadline"]) if shared["deadline"] else None
    rating = phase in (Phase.RATING, Phase.FINAL_RATING)
    return {
        "id": shared["id"],
        "phase": phase.value,
        "round": flow.round_of(phase),
        "deadline": shared["deadline"],
        "phase_started_at": shared["phase_started_at"],  # server clock; lets load tests time push delivery
        "seconds_left": max(0, int((deadline - now).total_seconds())) if deadline else None,
        "paused": shared["paused_seconds_left"] is not None,
        "paused_seconds_left": shared["paused_seconds_left"],
        "question": shared["question"],
        "members": [{"position": pos, "connected": pid in connected, "submitted": pid in submitted,
                     "is_me": pid == participant_id} for pid, pos, _ in shared["members"]],
        "generation_error": shared["generation_error"],
        "submitted": participant_id in submitted,
        "draft": own["draft"],
        "candidates": [{"id": cid, "text": text} for cid, text in
                       _candidate_order(shared["candidates"], participant_id)] if rating else [],
        "winner": shared["winner"],
        "my_opinion": own["opinion"],
        "my_ratings": own["ratings"] if rating else None,
        "my_critique": own["critique"],
        "outcome": shared["outcome"],
    }


# --- the push path: a member's snapshot from the pushed shared state, without a database read -------------
# The statuses a group's finish gives its members (``services.group_finish``).
FINISHED_IN_GROUP = (Participant.Status.COMPLETED.value, Participant.Status.DROPPED.value)


def _answered(own: dict[str, Any], phase: Phase) -> bool:
    if phase is Phase.OPINION:
        return own["opinion"] is not None
    if phase is Phase.CRITIQUE:
        return own["critique"] is not None
    if phase in (Phase.RATING, Phase.FINAL_RATING):
        return own["ratings_round"] == flow.round_of(phase) and bool(own["ratings"])
    return True


class PushView:
    """What a socket last showed its participant: enough to turn the next pushed shared state into their
    snapshot without reading the database, and to know when that is not safe. ``snapshot`` returns None
    whenever the member's own data may have changed in ways the push does not carry; the consumer then reads
    the database. Those cases: not (or no longer) in this group; their answer is counted as submitted but
    this socket has not seen it (their own submission, or another tab's); a phase ended before they answered
    (the time-out may have stored their draft as their answer). Their own submissions and drafts from this
    socket are kept (``answer_stored``, ``draft_saved``); a draft typed in another tab shows at that tab's next
    reload or database read."""

    def __init__(self, participant_id: int, snapshot: dict[str, Any]):
        self.participant_id = participant_id
        self.study = snapshot["study"]
        self.participant = snapshot["participant"]
        self.lobby = snapshot.get("lobby")
        self.status = snapshot["participant"]["status"]
        self.position = snapshot["participant"]["position"]
        group = snapshot.get("group")
        self.group_id = group["id"] if group else None
        self.version = version_of_group(snapshot["version"])
        self.phase = Phase(group["phase"]) if group else None
        self.own = {"opinion": group["my_opinion"] if group else None,
                    "critique": group["my_critique"] if group else None,
                    "ratings": group["my_ratings"] if group else None,
                    "ratings_round": group["round"] if group and group["my_ratings"] else None,
                    "draft": group["draft"] if group else None}

    def answer_stored(self, group_id: int, kind: str, stored: Any, round_: int | None = None) -> None:
        """This socket's own submission was stored (``SubmitResult.stored``): the push that follows it can be
        shown without a read."""
        if group_id != self.group_id:
            return
        if kind == "ratings":
            self.own = {**self.own, "ratings": stored, "ratings_round": round_}
        else:
            self.own = {**self.own, kind: stored}

    def draft_saved(self, phase: str, payload: dict) -> None:
        if self.phase is not None and phase == self.phase.value:
            self.own["draft"] = json.loads(json.dumps(payload))  # as the JSON column gives it back

    def lobby_snapshot(self, lobby: dict[str, Any], now: datetime | None = None) -> dict[str, Any] | None:
        """The snapshot after a lobby push (``{"waiting": n}``), or None when this socket does not show the
        lobby (its participant moved on: that comes with a push of their own)."""
        if self.status != Participant.Status.LOBBY or self.lobby is None:
            return None
        self.lobby = {**self.lobby, "waiting": lobby["waiting"]}
        return {"type": "snapshot", "version": snapshot_version(self.status, None, None),
                "server_time": _iso(now or timezone.now()), "study": self.study, "participant": self.participant,
                "lobby": self.lobby, "group": None}

    def _joins(self, shared: dict[str, Any], mine: list | None) -> bool:
        """Whether this lobby socket's participant is a member of a group in its first state (as formed)."""
        return (self.status == Participant.Status.LOBBY and self.group_id is None and mine is not None
                and mine[2] == Participant.Status.IN_GROUP and shared["phase"] == Phase.OPINION.value
                and not shared["submitted"] and shared["outcome"] is None)

    def is_news(self, shared: dict[str, Any]) -> bool:
        return shared["id"] != self.group_id or shared["version"] > self.version

    def snapshot(self, shared: dict[str, Any], now: datetime | None = None) -> dict[str, Any] | None:
        now = now or timezone.now()
        in_group = Participant.Status.IN_GROUP
        mine = next((row for row in shared["members"] if row[0] == self.participant_id), None)
        if self._joins(shared, mine):
            # A group formed from the lobby: nothing of this member's is in it yet (no answer, no draft).
            self.status, self.position, self.group_id, self.lobby = in_group.value, mine[1], shared["id"], None
            self.phase = Phase(shared["phase"])
            self.participant = {**self.participant, "status": self.status, "position": self.position}
            self.own = {"opinion": None, "critique": None, "ratings": None, "ratings_round": None, "draft": None}
        # A member the group's finish just finished: their page shows their completion code (from the push).
        finished = (mine is not None and mine[2] in FINISHED_IN_GROUP and shared["phase"] == Phase.DONE.value
                    and shared.get("completion") is not None)
        if self.status != in_group or shared["id"] != self.group_id or mine is None or \
                (mine[2] != in_group and not finished):
            return None
        phase = Phase(shared["phase"])
        if phase is not self.phase:
            order = list(Phase)
            passed = order[order.index(self.phase):order.index(phase)]  # the phases that ended since
            if shared["version"] == self.version + 1:
                # One change since what this socket showed: the phases between were skipped (a study without
                # the critique round), not run unseen; only the phase it showed has ended.
                passed = passed[:1]
            if not passed or any(p in flow.INPUT_PHASES and (p is not self.phase or not _answered(self.own, p))
                                 for p in passed):
                return None  # back in time (never), or a phase ended that this socket saw unanswered or not at all
            self.own = {**self.own, "draft": None}  # drafts belong to a phase; a new phase starts without one
        if phase in flow.INPUT_PHASES and self.participant_id in shared["submitted"] and not _answered(self.own, phase):
            return None
        self.phase, self.version = phase, shared["version"]
        own = self.own
        if own["ratings_round"] != flow.round_of(phase):
            own = {**own, "ratings": None}
        code = url = None
        if finished:
            self.status = mine[2]
            code = shared["completion"]["codes"][self.status]
            url = PROLIFIC_COMPLETE_URL.format(code=code) if shared["completion"]["prolific"] and code else None
        return {
            "type": "snapshot",
            "version": snapshot_version(self.status, shared["id"], shared["version"]),
            "server_time": _iso(now),
            "study": self.study,
            "participant": {"status": self.status, "position": mine[1], "completion_code": code,
                            "completion_url": url},
            "lobby": None,
            "group": _group_part(self.participant_id, shared, own, now),
        }


# --- the arm an offline tool uses ------------------------------------------------------------------
class ArmChoiceError(ValueError):
    """No arm of that name, or several arms and none named."""


def study_arm(study: Study, name: str | None = None) -> StudyArm:
    """The arm whose generation settings an offline tool (corpus expansion, offline leave-one-out, persona bots)
    uses: the one called ``name``, else the study's only arm. A study without arms yet (made in code) gets an
    unsaved arm of its own settings, the one its first group would get (``StudyArm.from_study``).

    Raises ``ArmChoiceError`` naming the study's arms when ``name`` is not one of them, or when there are several
    and none is named."""
    arms = list(StudyArm.objects.filter(study=study).select_related("generator_model").order_by("id"))
    for arm in arms:
        arm.study = study  # the arm's options read the study (key variable, timeouts): no second query
    names = ", ".join(repr(arm.name) for arm in arms)
    if name is not None:
        found = next((arm for arm in arms if arm.name == name), None)
        if found is None:
            raise ArmChoiceError(f"study {study.slug!r} has no arm {name!r}; "
                                 + (f"its arms: {names}" if arms else "it has no arms yet (omit the arm to use "
                                                                      "the study's own settings)"))
        return found
    if not arms:
        return StudyArm.from_study(study)
    if len(arms) > 1:
        raise ArmChoiceError(f"study {study.slug!r} has {len(arms)} arms ({names}); name one with --arm NAME")
    return arms[0]
