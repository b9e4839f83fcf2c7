"""Websocket limits on the participant socket (issue 15 item 5), through the real ASGI app and Redis layer:
per-socket token buckets for drafts, syncs, pings and submissions, and a cap on sockets per participant.
The frame-size limit of the ASGI server itself is tested against a real daphne in tests/e2e/test_ws_frame_limit.py.
"""
from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async as adb

from deliberation.models import Draft, Opinion
from participants.models import Presence

from .test_consumers import OPINIONS, close_all, grouped, next_of, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def message(kind: str, i: int) -> dict:
    return {"draft": {"type": "draft", "phase": "opinion", "text": f"draft number {i}"},
            "ping": {"type": "ping", "version": None},
            "sync": {"type": "sync"}}[kind] | {"ref": f"{kind}-{i}"}


async def replies_to(ws, refs: set[str], *, snapshot_answers: bool = False) -> dict[str, dict]:
    """Read until every ref got its ack/pong/error; with ``snapshot_answers`` a snapshot (the answer to a sync or
    a stale ping, which carries no ref) counts as the answer to one of them."""
    got: dict[str, dict] = {}
    snapshots = 0
    while len(got) + snapshots < len(refs):
        reply = json.loads(await ws.receive_from(timeout=10))
        if reply.get("ref") in refs:
            got[reply["ref"]] = reply
        elif reply["type"] == "snapshot" and snapshot_answers:
            snapshots += 1
    return got


@pytest.mark.parametrize("kind", ["draft", "ping", "sync"])
async def test_a_flood_gets_rate_limited_replies_and_the_socket_stays_usable(kind, settings):
    settings.WEBSOCKET_RATE_LIMITS = {**settings.WEBSOCKET_RATE_LIMITS, kind: (5, 0.5)}
    study, people, sockets = await grouped(3)
    ws = sockets[0]
    refs = {f"{kind}-{i}" for i in range(12)}
    for i in range(12):
        await ws.send_to(text_data=json.dumps(message(kind, i)))
    replies = await replies_to(ws, refs, snapshot_answers=kind in ("sync", "ping"))
    limited = [r for r in replies.values() if r["type"] == "error"]
    assert len(limited) >= 12 - 5 - 2, replies  # a burst of 5, then 1 token per 2 s
    assert all(r["code"] == "rate_limited" and r["retry_after"] > 0 and "wait" in r["message"] for r in limited)
    # The socket stays open and usable: another kind of message goes through, and so does a submission.
    await ws.send_to(text_data=json.dumps({"type": "submit_opinion", "text": OPINIONS[0], "ref": "after"}))
    assert (await next_of(ws, "ack", where=lambda m: m["ref"] == "after"))["created"] is True
    assert await adb(Opinion.objects.filter(participant_id=people[0].pk).count)() == 1
    if kind == "draft":  # a refused draft stored nothing: the stored one is the last one acknowledged
        acked = sorted(int(ref.split("-")[1]) for ref, r in replies.items() if r["type"] == "ack")
        draft = await adb(Draft.objects.get)(participant_id=people[0].pk, phase="opinion")
        assert draft.payload == {"text": f"draft number {acked[-1]}"}
    await close_all(sockets)


async def test_submissions_have_a_bucket_too(settings):
    settings.WEBSOCKET_RATE_LIMITS = {**settings.WEBSOCKET_RATE_LIMITS, "submit": (2, 0.1)}
    study, people, sockets = await grouped(3)
    ws = sockets[1]
    for i in range(4):
        await ws.send_to(text_data=json.dumps({"type": "submit_opinion", "text": OPINIONS[1], "ref": f"s{i}"}))
    replies = await replies_to(ws, {f"s{i}" for i in range(4)})
    assert [replies[f"s{i}"]["type"] for i in range(4)] == ["ack", "ack", "error", "error"]
    assert replies["s2"]["code"] == "rate_limited"
    assert await adb(Opinion.objects.count)() == 1
    await close_all(sockets)


async def test_a_new_socket_beyond_the_cap_closes_the_oldest_with_a_reason(settings):
    settings.WEBSOCKET_MAX_SOCKETS_PER_PARTICIPANT = 2
    study, people, sockets = await grouped(3)
    first = sockets[0]
    second = await open_socket(people[0])
    await next_of(second, "snapshot")
    third = await open_socket(people[0])
    await next_of(third, "snapshot")
    reply = await next_of(first, "error")
    assert reply["code"] == "replaced" and "another window or tab" in reply["message"]
    closed = await first.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4409}
    # The two newest stay usable, and the closed one no longer counts as present.
    for ws in (second, third):
        await ws.send_to(text_data=json.dumps({"type": "ping", "version": "stale", "ref": "p"}))
        assert (await next_of(ws, "snapshot"))["participant"]["status"] == "in_group"
    await first.disconnect()  # the test client delivers the close to the consumer now
    assert await adb(Presence.objects.filter(participant_id=people[0].pk).count)() == 2
    # Other participants' sockets do not count against this participant's cap.
    await sockets[1].send_to(text_data=json.dumps({"type": "ping", "version": "stale"}))
    await next_of(sockets[1], "snapshot")
    await close_all([second, third, *sockets[1:]])
