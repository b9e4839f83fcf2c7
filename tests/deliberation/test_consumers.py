"""The participant websocket through the real ASGI app and the Redis channel layer."""
from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async as adb
from channels.testing import WebsocketCommunicator

from config.asgi import application
from deliberation.models import Candidate, Opinion, Rating
from generation.services import candidates_generate
from participants.models import Participant, Presence

from ..factories import make_study

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

OPINIONS = [
    "Food taxes hit poor families hardest, so removing them is fair and simple.",
    "We need the revenue for schools; removing food taxes would cut public services.",
    "Remove taxes on basic groceries but keep them on sweets and luxury foods.",
]


async def open_socket(participant: Participant) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, f"/ws/p/{participant.token}/", headers=[(b"origin", b"http://localhost")])
    connected, _ = await ws.connect()
    assert connected
    return ws


async def next_of(ws: WebsocketCommunicator, kind: str, timeout: float = 5, where=lambda m: True) -> dict:
    """Read messages until one of ``kind`` (and matching ``where``) arrives."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        message = json.loads(await ws.receive_from(timeout=max(0.01, remaining)))
        if message["type"] == kind and where(message):
            return message


def phase_is(phase):
    return lambda m: (m.get("group") or {}).get("phase") == phase


@adb
def consented_participants(study, n):
    from participants.services import participant_consent, participant_join

    people = []
    for i in range(n):
        p = participant_join(study=study, params={"PROLIFIC_PID": f"ws-{i}"})
        people.append(participant_consent(participant=p))
    return people


async def grouped(n=3, **study_fields):
    study = await adb(make_study)(max_group_size=n, min_group_size=n, **study_fields)
    people = await consented_participants(study, n)
    sockets = []
    for p in people:
        sockets.append(await open_socket(p))
    for ws in sockets:
        await next_of(ws, "snapshot", where=phase_is("opinion"))
    refreshed = [await adb(Participant.objects.get)(pk=p.pk) for p in people]
    return study, refreshed, sockets


async def close_all(sockets):
    for ws in sockets:
        await ws.disconnect()


async def test_unknown_token_is_refused():
    ws = WebsocketCommunicator(application, "/ws/p/not-a-token/", headers=[(b"origin", b"http://localhost")])
    connected, code = await ws.connect()
    assert not connected and code == 4404


async def test_connect_sends_snapshot_and_lobby_groups_on_arrival():
    study, people, sockets = await grouped(3)
    assert all(p.group_id == people[0].group_id for p in people)
    assert await adb(Presence.objects.count)() == 3
    await close_all(sockets)
    assert await adb(Presence.objects.count)() == 0


async def test_malformed_and_unknown_messages_get_error_replies_and_socket_survives():
    study, people, sockets = await grouped(3)
    ws = sockets[0]
    for raw, code in [("not json", "malformed"), ("[1,2]", "malformed"), ('{"type": "hack"}', "unknown_type"),
                      ('{"type": "submit_opinion", "text": 5}', "invalid"),
                      ('{"type": "submit_ratings", "round": 3, "ratings": [], "ranking": []}', "invalid"),
                      ('{"type": "submit_opinion", "text": "x", "extra": 1}', "invalid"),
                      (json.dumps({"type": "submit_opinion", "text": "a" * 70000}), "too_large"),
                      ('{"type": "submit_critique", "text": "too early for this"}', "wrong_phase")]:
        await ws.send_to(text_data=raw)
        reply = await next_of(ws, "error")
        assert reply["code"] == code, raw
    await ws.send_to(text_data=json.dumps({"type": "ping", "version": "stale"}))
    assert (await next_of(ws, "snapshot"))["group"]["phase"] == "opinion"
    await close_all(sockets)


async def test_invalid_unicode_is_stored_safely():
    study, people, sockets = await grouped(3)
    await sockets[0].send_to(text_data='{"type": "submit_opinion", "text": "I think \\ud800 taxes should go down"}')
    await next_of(sockets[0], "ack")
    text = await adb(lambda: Opinion.objects.get(participant_id=people[0].pk).text)()
    assert "\ud800" not in text and "taxes should go down" in text
    await close_all(sockets)


async def test_over_long_opinion_is_refused_with_a_clear_message():
    study, people, sockets = await grouped(3)
    await sockets[0].send_to(text_data=json.dumps({"type": "submit_opinion", "text": "word " * 300, "ref": "r1"}))
    reply = await next_of(sockets[0], "error")
    assert reply["code"] == "too_long" and reply["ref"] == "r1" and "1000" in reply["message"]
    assert not await adb(Opinion.objects.exists)()
    await close_all(sockets)


async def test_every_member_receives_a_snapshot_after_each_commit_and_full_flow_over_websockets():
    study, people, sockets = await grouped(3)
    for ws, text in zip(sockets, OPINIONS):
        await ws.send_to(text_data=json.dumps({"type": "submit_opinion", "text": text}))
    for ws in sockets:
        await next_of(ws, "snapshot", where=phase_is("generating"))
    group_id = people[0].group_id
    await adb(candidates_generate)(group_id=group_id, round=1)
    snaps = [await next_of(ws, "snapshot", where=phase_is("rating")) for ws in sockets]
    ids = sorted(c["id"] for c in snaps[0]["group"]["candidates"])
    for ws in sockets:
        await ws.send_to(text_data=json.dumps({
            "type": "submit_ratings", "round": 1, "ranking": ids,
            "ratings": [{"candidate_id": i, "agreement": 6, "quality": 5} for i in ids]}))
    for ws in sockets:
        snap = await next_of(ws, "snapshot", where=phase_is("critique"))
        assert snap["group"]["winner"]["id"] in ids
    # A double submission (second tab, retry) is acknowledged as not created, and nothing is duplicated;
    # different ratings sent again get a clear error and change nothing.
    await sockets[0].send_to(text_data=json.dumps({
        "type": "submit_ratings", "round": 1, "ranking": ids,
        "ratings": [{"candidate_id": i, "agreement": 6, "quality": 5} for i in ids]}))
    assert (await next_of(sockets[0], "ack"))["created"] is False
    await sockets[0].send_to(text_data=json.dumps({
        "type": "submit_ratings", "round": 1, "ranking": ids, "ref": "again",
        "ratings": [{"candidate_id": i, "agreement": 1, "quality": 1} for i in ids]}))
    reply = await next_of(sockets[0], "error")
    assert reply["code"] == "already_submitted" and reply["ref"] == "again"
    assert await adb(Rating.objects.count)() == 3 * len(ids)
    assert await adb(lambda: set(Rating.objects.values_list("agreement", flat=True)))() == {6}
    await close_all(sockets)


async def test_second_tab_gets_the_same_state_and_resubmission_is_idempotent():
    study, people, sockets = await grouped(3)
    await sockets[0].send_to(text_data=json.dumps({"type": "submit_opinion", "text": OPINIONS[0]}))
    assert (await next_of(sockets[0], "ack"))["created"] is True
    tab2 = await open_socket(people[0])
    snap = await next_of(tab2, "snapshot")
    assert snap["group"]["submitted"] is True and snap["group"]["my_opinion"] == OPINIONS[0]
    await tab2.send_to(text_data=json.dumps({"type": "submit_opinion", "text": OPINIONS[0]}))
    assert (await next_of(tab2, "ack"))["created"] is False
    # A different text: first the stored state, then a clear error; the stored opinion is unchanged.
    await tab2.send_to(text_data=json.dumps({"type": "submit_opinion", "text": "another text from tab two",
                                             "ref": "t2"}))
    assert (await next_of(tab2, "snapshot"))["group"]["my_opinion"] == OPINIONS[0]
    reply = await next_of(tab2, "error")
    assert reply["code"] == "already_submitted" and reply["ref"] == "t2" and "not stored" in reply["message"]
    assert await adb(Opinion.objects.count)() == 1
    assert await adb(lambda: Opinion.objects.get().text)() == OPINIONS[0]
    await tab2.disconnect()
    await close_all(sockets)


async def test_a_participant_cannot_touch_another_groups_candidates():
    study = await adb(make_study)(max_group_size=3, min_group_size=3)
    first = await consented_participants(study, 3)
    from participants.services import participant_consent, participant_join

    second = []
    for i in range(3):
        p = await adb(participant_join)(study=study, params={"PROLIFIC_PID": f"other-{i}"})
        second.append(await adb(participant_consent)(participant=p))
    sockets = [await open_socket(p) for p in first + second]
    for ws in sockets:
        await next_of(ws, "snapshot", where=phase_is("opinion"))
    for ws, text in zip(sockets, OPINIONS * 2):
        await ws.send_to(text_data=json.dumps({"type": "submit_opinion", "text": text}))
        await next_of(ws, "ack")
    # Groups form by arrival among connected members; sockets open concurrently, so the two groups need not be
    # exactly `first` and `second`: the other group is whichever one participant 0 is not in.
    a_group = (await adb(Participant.objects.get)(pk=first[0].pk)).group_id
    groups = await adb(lambda: set(Participant.objects.filter(pk__in=[p.pk for p in first + second])
                                   .values_list("group_id", flat=True)))()
    assert len(groups) == 2 and None not in groups
    b_group = next(g for g in groups if g != a_group)
    for gid in (a_group, b_group):
        await adb(candidates_generate)(group_id=gid, round=1)
    for i, ws in enumerate(sockets):
        try:
            await next_of(ws, "snapshot", where=phase_is("rating"))
        except TimeoutError:
            raise AssertionError(f"socket {i} never saw rating")
    foreign = await adb(lambda: list(Candidate.objects.filter(group_id=b_group).values_list("id", flat=True)))()
    await sockets[0].send_to(text_data=json.dumps({
        "type": "submit_ratings", "round": 1, "ranking": foreign,
        "ratings": [{"candidate_id": i, "agreement": 7, "quality": 7} for i in foreign]}))
    assert (await next_of(sockets[0], "error"))["code"] == "forbidden"
    await sockets[0].send_to(text_data=json.dumps({"type": "draft", "phase": "rating", "ranking": foreign}))
    await next_of(sockets[0], "ack")
    assert not await adb(Rating.objects.exists)()
    await close_all(sockets)


async def test_reconnect_resumes_with_draft():
    study, people, sockets = await grouped(3)
    await sockets[1].send_to(text_data=json.dumps({"type": "draft", "phase": "opinion", "text": "half a thought"}))
    await next_of(sockets[1], "ack")
    await sockets[1].disconnect()
    again = await open_socket(people[1])
    snap = await next_of(again, "snapshot")
    assert snap["group"]["draft"] == {"text": "half a thought"} and snap["group"]["phase"] == "opinion"
    await again.disconnect()
    await close_all([sockets[0], sockets[2]])


@pytest.mark.slow
async def test_idle_websocket_survives_30_seconds_on_redis_layer():
    """redis-py 8 + channels-redis 4.3 closed idle consumers after ~5 s; we pin redis<8 and set timeouts."""
    study, people, sockets = await grouped(3)
    await asyncio.sleep(31)
    await sockets[0].send_to(text_data=json.dumps({"type": "submit_opinion", "text": OPINIONS[0]}))
    await next_of(sockets[0], "ack")
    for ws in sockets[1:]:  # group pushes still reach the idle sockets
        snap = await next_of(ws, "snapshot", where=lambda m: m["group"]["members"][0]["submitted"])
        assert snap["group"]["phase"] == "opinion"
    await close_all(sockets)


async def test_a_taken_over_member_gets_a_clear_error_reply_and_nothing_is_stored():
    study, people, sockets = await grouped()
    gone = people[2]
    await adb(Participant.objects.filter(pk=gone.pk).update)(status="dropped", taken_over_at=gone.created_at)
    await sockets[2].send_to(text_data=json.dumps({"type": "submit_opinion", "text": OPINIONS[2], "ref": "late"}))
    reply = await next_of(sockets[2], "error")
    assert reply["code"] == "taken_over" and reply["ref"] == "late" and "simulated participant" in reply["message"]
    await sockets[2].send_to(text_data=json.dumps({"type": "draft", "phase": "opinion", "text": "x", "ref": "d"}))
    assert (await next_of(sockets[2], "error"))["code"] == "taken_over"
    assert not await adb(Opinion.objects.filter(participant_id=gone.pk).exists)()
    await sockets[0].send_to(text_data=json.dumps({"type": "submit_opinion", "text": OPINIONS[0], "ref": "ok"}))
    assert (await next_of(sockets[0], "ack"))["ref"] == "ok"  # the socket and the others carry on
    await close_all(sockets)
