"""The lean write and push path (issue 16): few statements under the group lock, the pushed state built in the
transaction, pings without PostgreSQL writes (and correct through a Redis outage), drafts coalesced."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
from datetime import timedelta

import pytest
import redis
from channels.db import database_sync_to_async as adb
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliberation import services
from deliberation.consumers import _ping
from deliberation.models import Candidate, Draft, Group, GroupEvent, Opinion, Rating
from deliberation.realtime import group_channel
from deliberation.selectors import connected_participant_ids, group_shared_state
from deliberation.services import critique_submit, opinion_submit, ratings_submit
from deliberation.sweeper import sweep
from generation.services import candidates_generate
from participants.models import Participant, Presence
from participants.presence import CHANNELS_KEY, SINCE_KEY
from participants.services import presence_disconnect, presence_ping

from ..e2e.services import private_redis
from ..factories import make_group, make_study
from ..waiting import wait_for
from .test_consumers import OPINIONS, close_all, grouped, next_of

LOCK = re.compile(r'FOR (NO KEY )?UPDATE OF "deliberation_group"')
WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


def statements_under_lock(call):
    """Run ``call`` (one submission, its own transaction) and return (its result, the SQL statements between
    the group's ``SELECT ... FOR UPDATE`` and the ``COMMIT``). Nothing may run after the commit: the push
    carries the state built in the transaction."""
    with CaptureQueriesContext(connection) as captured:
        result = call()
    sql = [q["sql"] for q in captured.captured_queries]
    locks = [i for i, s in enumerate(sql) if LOCK.search(s)]
    assert len(locks) == 1, sql
    assert sql[-1] == "COMMIT", sql  # the last statement: no read for the push after it
    return result, sql[locks[0] + 1:-1]


def listen(group: Group):
    """A channel in the group's channel group, and a call that returns its next message. Its own event loop, in
    a thread, lives as long as the listener: the pub/sub channel layer keeps a channel's subscription per loop."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True, name="listen").start()
    layer = get_channel_layer()

    def run(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=10)

    channel = run(layer.new_channel())
    run(layer.group_add(group_channel(group.pk), channel))
    return lambda: run(layer.receive(channel))


def fresh_state(group_id: int) -> dict:
    group = Group.objects.select_related("question", "winner_round1", "winner_round2").get(pk=group_id)
    return group_shared_state(group, cache=False)


def rate(member, round_):
    ids = list(Candidate.objects.filter(group_id=member.group_id, round=round_, shown=True)
               .order_by("index").values_list("id", flat=True))
    return lambda: ratings_submit(participant=member, round=round_, ref=f"rate-{member.pk}-{round_}",
                                  ratings={cid: {"agreement": 5, "quality": 4} for cid in ids}, ranking=ids)


@pytest.mark.django_db(transaction=True)
def test_each_submission_kind_runs_at_most_six_statements_under_the_group_lock_and_pushes_its_own_state():
    group, members = make_group(n=3)
    receive = listen(group)
    counts = {}

    result, sql = statements_under_lock(
        lambda: opinion_submit(participant=members[0], text=OPINIONS[0], ref="op-0"))
    assert result.created
    counts["opinion"] = sql
    pushed = receive()["group"]
    assert pushed == fresh_state(group.pk)  # built in the transaction, equal to what a read now gives
    assert pushed["submitted"] == [members[0].pk]

    for member, text in zip(members[1:], OPINIONS[1:]):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    result, counts["ratings"] = statements_under_lock(rate(members[0], 1))
    assert result.created
    for member in members[1:]:
        rate(member, 1)()
    group.refresh_from_db()
    assert group.phase == "critique"
    receive = listen(group)  # from here on
    result, counts["critique"] = statements_under_lock(
        lambda: critique_submit(participant=members[0], text="Say which foods count as basic.", ref="cr-0"))
    assert result.created
    assert receive()["group"] == fresh_state(group.pk)

    assert {kind: len(sql) for kind, sql in counts.items()} == {"opinion": 4, "ratings": 5, "critique": 4}, counts
    for kind, sql in counts.items():
        assert len(sql) <= 6, (kind, sql)
        assert not any('FROM "deliberation_group"' in s for s in sql), sql  # the group is not read again


@pytest.mark.django_db(transaction=True)
def test_before_the_lock_a_submission_runs_one_statement_its_receipt_and_no_savepoint():
    """The receipt's INSERT (nothing on a conflict) is the only statement before the group's lock: whether the
    member may still write is read from the members' read under the lock. A taken-over member is refused there
    and leaves no receipt."""
    group, members = make_group(n=3)
    with CaptureQueriesContext(connection) as captured:
        assert opinion_submit(participant=members[0], text=OPINIONS[0], ref="op-first").created
    sql = [q["sql"] for q in captured.captured_queries]
    before = [s for s in sql[:next(i for i, s in enumerate(sql) if LOCK.search(s))] if s != "BEGIN"]
    assert len(before) == 1 and "ON CONFLICT" in before[0] and "submissionreceipt" in before[0], sql
    assert not any("SAVEPOINT" in s for s in sql), sql
    with CaptureQueriesContext(connection) as again:  # the same ref again: the original ack, nothing under a lock
        replay = opinion_submit(participant=members[0], text=OPINIONS[0], ref="op-first")
    assert replay.created and replay.replayed
    assert not any(LOCK.search(q["sql"]) for q in again.captured_queries)
    Participant.objects.filter(pk=members[1].pk).update(taken_over_at=timezone.now())
    with pytest.raises(services.SubmissionError) as refused:
        opinion_submit(participant=members[1], text=OPINIONS[1], ref="op-taken")
    assert refused.value.code == "taken_over"
    assert not services.SubmissionReceipt.objects.filter(ref="op-taken").exists()
    assert not Opinion.objects.filter(participant=members[1]).exists()


def ends_phase(group: Group, kind: str, call, counts: dict) -> dict:
    """Run the submission that ends the group's phase; record its statements under the lock and check that the
    state it pushed equals a fresh read after it."""
    receive = listen(group)
    result, counts[kind] = statements_under_lock(call)
    assert result.created
    pushed = receive()["group"]
    assert pushed == fresh_state(group.pk), kind
    return pushed


def chosen_from_the_database(group_id: int, round_: int) -> int:
    """The round's winner as the rule gives it from the stored ratings, read afresh (no rows passed in)."""
    group = Group.objects.select_related("study").get(pk=group_id)
    return services.winner_choose(group, round_, services._Writes()).pk


@pytest.mark.django_db(transaction=True)
def test_each_submission_that_ends_a_phase_runs_at_most_six_statements_and_pushes_its_own_state():
    group, members = make_group(n=3)
    first, last = members[:2], members[2]
    counts = {}
    for member, text in zip(first, OPINIONS):
        opinion_submit(participant=member, text=text)
    pushed = ends_phase(group, "opinion", lambda: opinion_submit(participant=last, text=OPINIONS[2]), counts)
    assert pushed["phase"] == "generating" and pushed["submitted"] == []

    candidates_generate(group_id=group.pk, round=1)
    for member in first:
        rate(member, 1)()
    pushed = ends_phase(group, "ratings", rate(last, 1), counts)
    group.refresh_from_db()
    assert pushed["phase"] == "critique" and pushed["winner"]["id"] == group.winner_round1_id
    assert group.winner_round1_id == chosen_from_the_database(group.pk, 1)

    for member in first:
        critique_submit(participant=member, text="Say which foods count as basic.")
    pushed = ends_phase(group, "critique", lambda: critique_submit(participant=last, text="Name the basic foods."),
                        counts)
    assert pushed["phase"] == "revising" and pushed["winner"]["id"] == group.winner_round1_id

    candidates_generate(group_id=group.pk, round=2)
    for member in first:
        rate(member, 2)()
    pushed = ends_phase(group, "final_rating", rate(last, 2), counts)
    group.refresh_from_db()
    assert pushed["phase"] == "done" and pushed["outcome"] == "completed"
    assert pushed["winner"]["id"] == group.winner_round2_id == chosen_from_the_database(group.pk, 2)
    assert [status for _, _, status in pushed["members"]] == ["completed"] * 3
    assert set(Participant.objects.filter(group=group).values_list("status", "completion_code")) == \
        {("completed", "DONE123")}

    assert {kind: len(sql) for kind, sql in counts.items()} == \
        {"opinion": 4, "ratings": 5, "critique": 4, "final_rating": 6}, counts
    for kind, sql in counts.items():
        assert len(sql) <= 6, (kind, sql)
        assert not any('FROM "deliberation_group"' in s for s in sql), sql  # the group is not read (nor locked) again
    # One INSERT of the events per submission, in the order they happened.
    events = list(GroupEvent.objects.filter(group=group).order_by("id").values_list("kind", "created_at"))
    assert [kind for kind, _ in events[-4:]] == ["ratings_submitted", "phase_changed", "winner_chosen",
                                                 "group_finished"]
    assert [at for _, at in events] == sorted(at for _, at in events)


@pytest.mark.django_db(transaction=True)
def test_the_last_rating_of_a_round_stores_an_absent_members_draft_and_counts_it_for_the_winner():
    group, members = make_group(n=3)
    for member, text in zip(members, OPINIONS):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    ids = list(Candidate.objects.filter(group=group, round=1, shown=True).order_by("index")
               .values_list("id", flat=True))
    away, stays, last = members
    services.draft_save(participant=away, phase="rating", payload={
        "ratings": {str(cid): {"agreement": 2, "quality": 3} for cid in ids}, "ranking": ids[::-1]})
    Presence.objects.filter(participant=away).delete()  # gone: the group no longer waits for them
    rate(stays, 1)()
    counts = {}
    pushed = ends_phase(group, "ratings", rate(last, 1), counts)
    assert pushed["phase"] == "critique"
    stored = Rating.objects.filter(participant=away, round=1)
    assert stored.count() == len(ids) and all(r.by_timeout for r in stored)
    assert sorted(stored.values_list("candidate_id", "rank")) == sorted(zip(ids[::-1], range(1, len(ids) + 1)))
    chosen = GroupEvent.objects.get(group=group, kind="winner_chosen")
    assert chosen.payload["ballots"] == 3  # the draft's ranking was counted
    group.refresh_from_db()
    assert group.winner_round1_id == chosen_from_the_database(group.pk, 1)
    kinds = list(GroupEvent.objects.filter(group=group).order_by("id").values_list("kind", flat=True))
    assert kinds[-4:] == ["ratings_submitted", "phase_changed", "stored_by_timeout", "winner_chosen"]
    # Storing the draft (a savepoint, its INSERT, its release) is what this submission adds; no lock upgrade.
    assert len(counts["ratings"]) == 8, counts
    assert not any('FROM "deliberation_group"' in s for s in counts["ratings"]), counts


@pytest.mark.django_db(transaction=True)
def test_a_resubmission_with_the_same_ref_or_text_still_gets_the_stored_answer():
    group, members = make_group(n=3)
    opinion_submit(participant=members[0], text=OPINIONS[0], ref="a")
    again = opinion_submit(participant=members[0], text=OPINIONS[0], ref="b")
    assert not again.created and again.stored == OPINIONS[0]
    with pytest.raises(services.SubmissionError) as refused:
        opinion_submit(participant=members[0], text=OPINIONS[1], ref="c")
    assert refused.value.code == "already_submitted"
    assert Opinion.objects.get(participant=members[0]).text == OPINIONS[0]


# --- presence ---------------------------------------------------------------------------------------------
def presence_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.PRESENCE_REDIS_URL)


def age_rows(seconds: float) -> None:
    Presence.objects.update(last_seen=timezone.now() - timedelta(seconds=seconds))


@pytest.mark.django_db(transaction=True)
def test_a_ping_is_one_read_and_no_write_and_keeps_its_member_connected():
    group, members = make_group(n=3)
    presence_redis().set(SINCE_KEY, time.time() - 3600)  # a store that has seen every ping for an hour
    age_rows(40)  # everybody connected a while ago; the rows alone say so for 5 s more
    pinged = members[0]
    with CaptureQueriesContext(connection) as captured:
        version = _ping(pinged.pk, f"test.{pinged.pk}")
    sql = [q["sql"] for q in captured.captured_queries]
    assert len(sql) == 1 and not WRITE.match(sql[0]), sql
    group.refresh_from_db()
    assert version == f"in_group:{group.pk}:{group.version}"
    assert presence_redis().zscore(CHANNELS_KEY, f"test.{pinged.pk}") is not None
    later = timezone.now() + timedelta(seconds=20)  # rows 60 s old by then; the ping 20 s
    assert connected_participant_ids([m.pk for m in members], later) == {pinged.pk}


@pytest.mark.django_db(transaction=True)
def test_without_redis_as_in_the_demo_a_ping_refreshes_the_socket_row(settings):
    settings.PRESENCE_REDIS_URL = ""  # config/settings/local.py without REDIS_URL
    group, members = make_group(n=3)
    age_rows(40)
    with CaptureQueriesContext(connection) as captured:
        _ping(members[0].pk, f"test.{members[0].pk}")
    writes = [q["sql"] for q in captured.captured_queries if WRITE.match(q["sql"])]
    assert len(writes) == 1 and writes[0].startswith('UPDATE "participants_presence"'), writes
    later = timezone.now() + timedelta(seconds=20)
    assert connected_participant_ids([m.pk for m in members], later) == {members[0].pk}
    sweep(now=later)  # the other two rows are 60 s old then: gone, no Redis needed to tell
    assert set(Presence.objects.values_list("participant_id", flat=True)) == {members[0].pk}


@pytest.fixture
def ping_reads(monkeypatch):
    """The participants of every ping that took the reading path (consumers._ping; the real one runs)."""
    from deliberation import consumers

    calls = []
    real = consumers._ping

    def counted(participant_id, channel_name):
        calls.append(participant_id)
        return real(participant_id, channel_name)

    monkeypatch.setattr(consumers, "_ping", counted)
    return calls


def count_snapshot_reads(monkeypatch) -> list[int]:
    """From now on, the participant of every snapshot a socket reads from the database (the real read runs)."""
    from deliberation import consumers

    reads = []
    real = consumers.read_snapshot

    async def counted(participant_id):
        reads.append(participant_id)
        return await real(participant_id)

    monkeypatch.setattr(consumers, "read_snapshot", counted)
    return reads


def ping(version, ref):
    return json.dumps({"type": "ping", "version": version, "ref": ref})


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_ping_showing_the_sockets_own_version_is_answered_from_memory_and_recorded_in_redis(ping_reads):
    study, people, sockets = await grouped(3)
    ws, member = sockets[0], people[0]
    shown = await adb(lambda: participant_version(member.pk))()
    await ws.send_to(text_data=ping(shown, "p1"))  # the first ping reads: the socket has not pinged before
    assert (await next_of(ws, "pong"))["version"] == shown
    assert ping_reads == [member.pk]
    channel = await adb(lambda: Presence.objects.get(participant=member).channel_name)()
    before = presence_redis().zscore(CHANNELS_KEY, channel)
    for i in range(3):  # pinging on: no database
        await asyncio.sleep(0.05)
        await ws.send_to(text_data=ping(shown, f"q{i}"))
        assert (await next_of(ws, "pong"))["version"] == shown
    assert ping_reads == [member.pk]
    assert presence_redis().zscore(CHANNELS_KEY, channel) > before  # each one recorded all the same
    # A client that shows something else (it missed a push) gets the reading path and a snapshot.
    await ws.send_to(text_data=ping("in_group:0:0", "stale"))
    assert (await next_of(ws, "snapshot"))["version"] == shown
    assert ping_reads == [member.pk, member.pk]
    await close_all(sockets)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_push_the_channel_layer_lost_is_repaired_by_the_first_ping_after_ping_verify_seconds(
        ping_reads, settings):
    settings.PING_VERIFY_SECONDS = 1.0
    study, people, sockets = await grouped(3)
    ws, member = sockets[0], people[0]
    shown = await adb(lambda: participant_version(member.pk))()
    await ws.send_to(text_data=ping(shown, "p0"))
    await next_of(ws, "pong")
    # The group moves on and its push never comes (a channel-layer outage): only the database knows.
    await adb(lambda: Group.objects.filter(pk=member.group_id).update(version=F("version") + 1))()
    await ws.send_to(text_data=ping(shown, "p1"))
    assert (await next_of(ws, "pong"))["version"] == shown  # within PING_VERIFY_SECONDS: from memory
    reads = len(ping_reads)
    await asyncio.sleep(1.1)
    await ws.send_to(text_data=ping(shown, "p2"))
    repaired = await next_of(ws, "snapshot")
    assert repaired["version"] == await adb(lambda: participant_version(member.pk))() != shown
    assert len(ping_reads) == reads + 1
    await close_all(sockets)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_without_redis_every_ping_reads_and_refreshes_the_row(ping_reads, settings):
    settings.PRESENCE_REDIS_URL = ""  # the demo: the row is the only record of a ping
    study, people, sockets = await grouped(3)
    ws, member = sockets[0], people[0]
    shown = await adb(lambda: participant_version(member.pk))()
    for i in range(3):
        await ws.send_to(text_data=ping(shown, f"p{i}"))
        await next_of(ws, "pong")
    assert ping_reads == [member.pk] * 3
    await close_all(sockets)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_no_event_of_a_socket_waits_for_the_shared_thread_that_closes_old_connections(monkeypatch):
    """Channels' dispatch hops to the process's one thread-sensitive thread for every event; this consumer's
    does not (its database calls run on the pool and close their own connections)."""
    import channels.consumer

    hops = []
    real = channels.consumer.aclose_old_connections

    async def counted():
        hops.append(1)
        return await real()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    study, people, sockets = await grouped(3)  # connects, and the pushes that form the group
    ws = sockets[0]
    await ws.send_to(text_data=draft("a draft", "d0"))
    await next_of(ws, "ack")
    await ws.send_to(text_data=ping(await adb(lambda: participant_version(people[0].pk))(), "p0"))
    await next_of(ws, "pong")
    assert hops == []
    await close_all(sockets)


def participant_version(participant_id: int) -> str:
    status, group_id, version = Participant.objects.filter(pk=participant_id).values_list(
        "status", "group_id", "group__version").get()
    return f"{status}:{group_id or 0}:{version or 0}"


@pytest.mark.django_db(transaction=True)
def test_a_ping_from_a_socket_whose_row_was_swept_registers_it_again():
    group, members = make_group(n=3)
    Presence.objects.filter(participant=members[1]).delete()
    presence_ping(participant_id=members[1].pk, channel_name="test.again")
    assert Presence.objects.filter(participant=members[1], channel_name="test.again").exists()


@pytest.mark.django_db(transaction=True)
def test_the_sweep_forgets_sockets_that_stopped_pinging_and_writes_back_the_live_ones_once():
    group, members = make_group(n=3)
    presence_redis().set(SINCE_KEY, time.time() - 3600)
    age_rows(100)
    presence_ping(participant_id=members[0].pk, channel_name=f"test.{members[0].pk}")
    sweep()
    assert set(Presence.objects.values_list("participant_id", flat=True)) == {members[0].pk}
    row = Presence.objects.get()
    assert timezone.now() - row.last_seen < timedelta(seconds=5)  # the ping's time, written back by the sweep
    group.refresh_from_db()
    assert fresh_state(group.pk)["connected"] == [members[0].pk]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow  # a 10-second outage, by design
def test_nobody_is_gone_or_taken_over_through_a_ten_second_redis_outage_nor_after_redis_lost_its_data(settings):
    """A private redis-server is paused (SIGSTOP) for 10 s, then killed and started empty. Meanwhile the sweeper
    runs every second. A member whose socket really closed (row deleted) is still taken over: the rule works."""
    study = make_study(slug="outage", bot_takeover=True)
    group, members = make_group(study)
    stays, also_stays, leaves = members
    with private_redis() as server:
        settings.PRESENCE_REDIS_URL = server.url
        store = redis.Redis.from_url(server.url)
        store.set(SINCE_KEY, time.time() - 3600)
        age_rows(100)  # connected long ago: only their pings in Redis keep them present
        for member in (stays, also_stays):
            presence_ping(participant_id=member.pk, channel_name=f"test.{member.pk}")
        presence_disconnect(participant_id=leaves.pk, channel_name=f"test.{leaves.pk}")
        Participant.objects.filter(pk=leaves.pk).update(last_seen_at=timezone.now() - timedelta(seconds=60))

        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            paused = time.monotonic()
            while time.monotonic() - paused < 10:
                presence_ping(participant_id=stays.pk, channel_name=f"test.{stays.pk}")  # fails fast, no error
                report = sweep(now=timezone.now() + timedelta(seconds=50))  # the rows and the pings look old
                assert report.members_taken_over <= 1
                time.sleep(1)
            assert connected_participant_ids([m.pk for m in members], timezone.now() + timedelta(seconds=50)) \
                == {stays.pk, also_stays.pk}
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        statuses = dict(Participant.objects.filter(pk__in=[m.pk for m in members]).values_list("pk", "status"))
        assert statuses == {stays.pk: "in_group", also_stays.pk: "in_group", leaves.pk: "dropped"}
        assert Presence.objects.count() == 2

        server.restart(down=1.0)  # every ping is lost
        connected_participant_ids([stays.pk], timezone.now())  # the client's old connection fails once
        time.sleep(1.2)  # and it waits out its retry pause
        sweep(now=timezone.now() + timedelta(seconds=30))
        assert float(store.get(SINCE_KEY)) > time.time() - 10  # the sweep reached Redis and saw the loss
        assert Presence.objects.count() == 2 and \
            Participant.objects.filter(pk__in=[stays.pk, also_stays.pk], status="in_group").count() == 2
        # The store's history starts again now; once it covers the timeout, silence means gone again.
        presence_ping(participant_id=stays.pk, channel_name=f"test.{stays.pk}",
                      now=timezone.now() + timedelta(seconds=40))
        sweep(now=timezone.now() + timedelta(seconds=50))
        assert set(Presence.objects.values_list("participant_id", flat=True)) == {stays.pk}
        store.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_finish_shows_every_member_their_completion_code_from_the_push_without_a_read(monkeypatch):
    """The finish carries the members' statuses and the study's codes in the group's push; the push to each
    member's own channel that follows it says so (``covered_by``), so their sockets read nothing."""
    from deliberation.selectors import participant_snapshot

    from .test_consumers import phase_is
    from .test_push_view import comparable

    study, people, sockets = await grouped(3, critique_round=False, prolific_redirect=True,
                                           completion_code_completed="DONE42")
    for i, ws in enumerate(sockets):
        await ws.send_to(text_data=json.dumps({"type": "submit_opinion", "text": f"Opinion number {i} on taxes."}))
    for ws in sockets:
        await next_of(ws, "snapshot", where=phase_is("generating"))
    await adb(candidates_generate)(group_id=people[0].group_id, round=1)
    ids = sorted(c["id"] for c in (await next_of(sockets[0], "snapshot", where=phase_is("rating")))["group"]
                 ["candidates"])
    for ws in sockets[1:]:
        await next_of(ws, "snapshot", where=phase_is("rating"))
    reads = count_snapshot_reads(monkeypatch)
    for ws in sockets:
        await ws.send_to(text_data=json.dumps({
            "type": "submit_ratings", "round": 1, "ranking": ids,
            "ratings": [{"candidate_id": i, "agreement": 5, "quality": 4} for i in ids]}))
    for ws, person in zip(sockets, people):
        shown = await next_of(ws, "snapshot", where=phase_is("done"))
        assert shown["participant"]["completion_code"] == "DONE42"
        assert shown["participant"]["completion_url"].endswith("cc=DONE42")
        assert comparable(shown) == comparable(await adb(participant_snapshot)(person))  # what a read shows
    await asyncio.sleep(0.5)  # the participant pushes after the group's have arrived too
    assert reads == []
    await close_all(sockets)


# --- drafts -------------------------------------------------------------------------------------------------
@pytest.fixture
def draft_writes(monkeypatch):
    """Every draft that reaches the service (the real one runs)."""
    calls = []
    real = services.drafts_save

    def counted(writes):
        calls.extend(w.payload for w in writes)
        return real(writes)

    monkeypatch.setattr(services, "drafts_save", counted)
    return calls


def draft(text: str, ref: str) -> str:
    return json.dumps({"type": "draft", "phase": "opinion", "text": text, "ref": ref})


def stored_draft(member):
    return Draft.objects.filter(participant=member, phase="opinion").values_list("payload", flat=True).first()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_drafts_within_the_interval_make_one_write_of_the_newest_and_every_one_is_acknowledged(draft_writes):
    study, people, sockets = await grouped(3)
    ws = sockets[0]
    await ws.send_to(text_data=draft("first", "d0"))
    assert (await next_of(ws, "ack"))["ref"] == "d0"
    assert draft_writes == [{"text": "first"}]
    for i in range(1, 6):  # typing on: five drafts within the next two seconds
        await ws.send_to(text_data=draft(f"typing {i}", f"d{i}"))
        await asyncio.sleep(0.1)
    acks = [await next_of(ws, "ack", timeout=5) for _ in range(5)]
    assert sorted(a["ref"] for a in acks) == [f"d{i}" for i in range(1, 6)] and all(a["created"] for a in acks)
    assert draft_writes == [{"text": "first"}, {"text": "typing 5"}]  # one write, the newest; none dropped
    assert await adb(stored_draft)(people[0]) == {"text": "typing 5"}
    await close_all(sockets)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_last_draft_is_written_when_the_socket_closes_and_a_deadline_stores_the_last_acknowledged(
        draft_writes, settings):
    settings.DRAFT_WRITE_INTERVAL_SECONDS = 5  # room for the deadline to pass before the waiting draft's write
    study, people, sockets = await grouped(3)
    await sockets[1].send_to(text_data=draft("written at once", "a"))
    assert (await next_of(sockets[1], "ack"))["created"]
    await sockets[1].send_to(text_data=draft("sent just before the socket closed", "b"))
    await sockets[1].disconnect(timeout=10)  # within the interval: not written yet, so written now
    assert await adb(stored_draft)(people[1]) == {"text": "sent just before the socket closed"}

    ws = sockets[0]
    await ws.send_to(text_data=draft("acknowledged opinion draft", "c"))
    assert (await next_of(ws, "ack"))["created"]
    await ws.send_to(text_data=draft("still waiting for its write", "d"))
    group = await adb(Group.objects.get)(pk=people[0].group_id)
    await adb(sweep)(now=group.deadline + timedelta(seconds=1))  # the deadline passes before the write
    ack = await next_of(ws, "ack", timeout=5)
    assert ack["ref"] == "d" and ack["created"] is False  # the phase had ended: not stored, and said so
    opinion = await adb(Opinion.objects.get)(participant=people[0])
    assert opinion.by_timeout and opinion.text == "acknowledged opinion draft"
    await close_all([sockets[0], sockets[2]])


# --- lobby ---------------------------------------------------------------------------------------------------
@adb
def arrive(study, pid: str) -> Participant:
    from participants.services import participant_consent, participant_join

    return participant_consent(participant=participant_join(study=study, params={"PROLIFIC_PID": pid}))


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_an_arrival_updates_the_lobby_sockets_without_a_database_read(monkeypatch):
    from deliberation.selectors import participant_snapshot

    from .test_consumers import open_socket

    study = await adb(make_study)(slug="lobby-push", max_group_size=5, min_group_size=3)
    waiting = [await arrive(study, "lobby-0")]
    ws = await open_socket(waiting[0])
    assert (await next_of(ws, "snapshot"))["lobby"]["waiting"] == 1
    reads = count_snapshot_reads(monkeypatch)
    for i in (1, 2):
        waiting.append(await arrive(study, f"lobby-{i}"))
        shown = await next_of(ws, "snapshot", where=lambda m, n=i + 1: m["lobby"]["waiting"] == n)
    fresh = await adb(participant_snapshot)(waiting[0])
    assert shown["lobby"] == fresh["lobby"] and shown["version"] == fresh["version"]
    assert shown["participant"] == fresh["participant"] and shown["study"] == fresh["study"]
    assert reads == []  # two arrivals, no snapshot read by the waiting socket
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_group_forming_is_shown_to_its_waiting_members_from_the_push_without_a_read(monkeypatch):
    from deliberation.selectors import participant_snapshot

    from .test_consumers import open_socket

    study = await adb(make_study)(slug="forming-push", max_group_size=3, min_group_size=3)
    people = [await arrive(study, f"forming-{i}") for i in range(3)]
    sockets = []
    for person in people[:2]:
        sockets.append(await open_socket(person))
        assert (await next_of(sockets[-1], "snapshot"))["group"] is None
    reads = count_snapshot_reads(monkeypatch)
    sockets.append(await open_socket(people[2]))  # the third arrives: the group forms
    shown = [await next_of(ws, "snapshot", where=lambda m: m["group"] is not None) for ws in sockets]
    assert reads == [people[2].pk]  # the newcomer's connect; nobody read the group it formed
    for person, snapshot in zip(people, shown):
        fresh = await adb(participant_snapshot)(person)
        for key in ("version", "participant", "study", "lobby"):
            assert snapshot[key] == fresh[key], key
        assert {**snapshot["group"], "seconds_left": None} == {**fresh["group"], "seconds_left": None}
    # The group's later pushes reach those sockets: they listen to its channel now (the advance ends a phase
    # they left unanswered, so each reads its own row then: a timed-out draft may have become its answer).
    group_id = shown[0]["group"]["id"]
    await adb(services.group_force_advance)(group_id=group_id, user="test")
    for ws in sockets:
        moved = await next_of(ws, "snapshot", where=lambda m: m["group"] and m["group"]["phase"] != "opinion")
        assert moved["group"]["id"] == group_id
    await close_all(sockets)


@pytest.mark.django_db
def test_matching_reads_only_waiters_with_a_socket_or_past_the_timeout_and_counts_the_whole_lobby(monkeypatch):
    """People who consented and never opened their page cannot be grouped: an arrival's match does not read
    them (O(lobby) per arrival) unless they are past the lobby timeout, and the number pushed counts them."""
    from deliberation import lobby, realtime

    from ..factories import join

    study = make_study(slug="lobby-reads", max_group_size=3, min_group_size=3, lobby_timeout_seconds=300)
    idle = [join(study, f"idle-{i}", connected=False) for i in range(30)]
    present = [join(study, f"here-{i}", connected=False) for i in range(3)]
    overdue = idle[0]
    Participant.objects.filter(pk=overdue.pk).update(lobby_entered_at=timezone.now() - timedelta(seconds=301))
    for p in present:
        Presence.objects.create(participant=p, channel_name=f"test.{p.pk}", last_seen=timezone.now())
    read = lobby._waiting_that_count(study, timezone.now())
    assert {pid for pid, _ in read} == {overdue.pk, *(p.pk for p in present)}
    pushed = []
    monkeypatch.setattr(realtime, "push_after_commit", lambda **kw: pushed.append(kw))
    groups = lobby.lobby_match(study_id=study.pk, announce=True)
    assert len(groups) == 1
    assert set(Participant.objects.filter(group=groups[0]).values_list("pk", flat=True)) == {p.pk for p in present}
    overdue.refresh_from_db()
    assert overdue.status == Participant.Status.LOBBY_TIMEOUT
    assert {"lobbies": {study.pk: 29}} in pushed  # 33 waiting - 3 grouped - 1 timed out
    assert Participant.objects.filter(study=study, status=Participant.Status.LOBBY).count() == 29


@pytest.mark.django_db
def test_registering_a_socket_is_three_statements_and_an_arrival_in_the_lobby_few_more():
    """A socket's connect writes its presence in three statements (last_seen_at unless withdrawn, one upsert, the
    row read for the presence change); an arrival that forms no group adds the matcher's few reads, whatever the
    study's size (no caps set: no count of the study's groups)."""
    from participants.services import presence_connect

    from ..factories import join

    study = make_study(slug="connect-count", max_group_size=5, min_group_size=5)
    for i in range(3):
        join(study, f"early-{i}")
    done = join(make_study(slug="connect-done"), "done")
    Participant.objects.filter(pk=done.pk).update(status=Participant.Status.COMPLETED)
    with CaptureQueriesContext(connection) as captured:
        presence_connect(participant_id=done.pk, channel_name="test.done")
    assert len(captured.captured_queries) == 3, [q["sql"] for q in captured.captured_queries]
    assert Presence.objects.filter(participant=done, channel_name="test.done").exists()
    with CaptureQueriesContext(connection) as again:  # the same socket again: one upsert, no second row
        presence_connect(participant_id=done.pk, channel_name="test.done")
    assert len(again.captured_queries) == 3 and Presence.objects.filter(channel_name="test.done").count() == 1

    newcomer = join(study, "newcomer", connected=False)
    with CaptureQueriesContext(connection) as arrival:
        presence_connect(participant_id=newcomer.pk, channel_name="test.newcomer")
    sql = [q["sql"] for q in arrival.captured_queries]
    assert not any('FROM "deliberation_group"' in s for s in sql), sql
    assert len([s for s in sql if s not in ("BEGIN", "COMMIT")]) <= 9, sql
    assert Participant.objects.get(pk=newcomer.pk).status == Participant.Status.LOBBY

    Participant.objects.filter(pk=done.pk).update(status=Participant.Status.WITHDRAWN)
    with CaptureQueriesContext(connection) as withdrawn:
        presence_connect(participant_id=done.pk, channel_name="test.withdrawn")
    assert len(withdrawn.captured_queries) == 1  # refused by the first statement, nothing written
    assert not Presence.objects.filter(channel_name="test.withdrawn").exists()


# --- drafts and the group's row lock (two real connections) -----------------------------------------------
def _hold_group(group_id: int, *, no_key: bool, locked: threading.Event, release: threading.Event,
                then=None) -> threading.Thread:
    def run():
        try:
            with transaction.atomic():
                services.lock_group(group_id, no_key=no_key)
                locked.set()
                release.wait(20)
                if then is not None:
                    then()
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert locked.wait(10)
    return thread


def _waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_draft_does_not_wait_for_a_submission_holding_the_group():
    group, members = make_group(n=3)
    locked, release = threading.Event(), threading.Event()
    holder = _hold_group(group.pk, no_key=True, locked=locked, release=release)  # as a submission does
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '3s'")  # a draft that waited would fail here, not hang
            assert services.draft_save(participant=members[0], phase="opinion",
                                       payload={"text": "while they submit"})
    finally:
        release.set()
        holder.join(10)
    assert stored_draft(members[0]) == {"text": "while they submit"}


@pytest.mark.django_db(transaction=True)
def test_a_draft_written_while_a_deadline_holds_the_group_waits_and_is_refused_after_it():
    group, members = make_group(n=3)
    services.draft_save(participant=members[0], phase="opinion", payload={"text": "the acknowledged words"})
    locked, release = threading.Event(), threading.Event()
    holder = _hold_group(group.pk, no_key=False, locked=locked, release=release,  # as a deadline's transition
                         then=lambda: Group.objects.filter(pk=group.pk).update(phase="generating"))
    box = {}

    def write():
        try:
            box["saved"] = services.draft_save(participant=members[0], phase="opinion",
                                               payload={"text": "words typed as time ran out"})
        finally:
            connection.close()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        wait_for(lambda: _waiting_on_a_lock() >= 1, 10, "the draft waiting for the deadline's lock")
        assert "saved" not in box
    finally:
        release.set()
        holder.join(10)
        writer.join(10)
    assert box["saved"] is False  # it saw the new phase: rolled back, acknowledged as not stored
    assert stored_draft(members[0]) == {"text": "the acknowledged words"}
