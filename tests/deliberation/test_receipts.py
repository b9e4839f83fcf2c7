"""A repeated submission ``ref`` gets the original acknowledgement and stores nothing (issue 15 item 6): the page
resends an unacknowledged submission with the same ref after a reconnect, a server restart or a reload."""
from __future__ import annotations

import json
import threading
import time

import pytest
from channels.db import database_sync_to_async as adb
from django.db import connection, connections, transaction

from deliberation.models import Critique, Group, Opinion, Rating, SubmissionReceipt
from deliberation.services import SubmissionError, critique_submit, opinion_submit
from generation.services import candidates_generate
from participants.models import Participant

from ..factories import make_group
from .test_consumers import OPINIONS, close_all, grouped, next_of, open_socket, phase_is

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.mark.asyncio
async def test_a_repeated_ref_gets_the_original_ack_even_after_the_group_moved_on():
    study, people, sockets = await grouped(3)
    submit = {"type": "submit_opinion", "text": OPINIONS[0], "ref": "3f1c-opinion"}
    await sockets[0].send_to(text_data=json.dumps(submit))
    first = await next_of(sockets[0], "ack")
    assert first == {"type": "ack", "ref": "3f1c-opinion", "created": True}

    # The page never saw that ack (the connection dropped): it reconnects and sends the same submission again.
    await sockets[0].disconnect()
    again = await open_socket(people[0])
    await next_of(again, "snapshot")
    await again.send_to(text_data=json.dumps(submit))
    assert await next_of(again, "ack") == first
    snap = await next_of(again, "snapshot")
    assert snap["group"]["submitted"] is True and snap["group"]["my_opinion"] == OPINIONS[0]
    assert await adb(Opinion.objects.filter(participant_id=people[0].pk).count)() == 1

    # A different ref for the same answer is a resubmission, not a retry: created=False, as before.
    await again.send_to(text_data=json.dumps({**submit, "ref": "other"}))
    assert (await next_of(again, "ack"))["created"] is False

    # The others submit and the group moves on; a late retry still gets the original ack, not "wrong phase".
    for ws, text in zip(sockets[1:], OPINIONS[1:]):
        await ws.send_to(text_data=json.dumps({"type": "submit_opinion", "text": text}))
        await next_of(ws, "ack")
    await next_of(again, "snapshot", where=lambda m: m["group"]["phase"] != "opinion")
    await again.send_to(text_data=json.dumps(submit))
    assert await next_of(again, "ack") == first
    assert await adb(Opinion.objects.count)() == 3
    assert await adb(SubmissionReceipt.objects.filter(participant_id=people[0].pk).count)() == 1
    await close_all([again, *sockets[1:]])


@pytest.mark.asyncio
async def test_ratings_are_replayed_by_ref_too():
    study, people, sockets = await grouped(3)
    for ws, text in zip(sockets, OPINIONS):
        await ws.send_to(text_data=json.dumps({"type": "submit_opinion", "text": text}))
    for ws in sockets:
        await next_of(ws, "snapshot", where=phase_is("generating"))
    group_id = people[0].group_id
    await adb(candidates_generate)(group_id=group_id, round=1)
    snap = await next_of(sockets[0], "snapshot", where=phase_is("rating"))
    ids = [c["id"] for c in snap["group"]["candidates"]]
    rate = {"type": "submit_ratings", "round": 1, "ranking": ids, "ref": "r-1",
            "ratings": [{"candidate_id": c, "agreement": 5, "quality": 4} for c in ids]}
    for _ in range(2):
        await sockets[0].send_to(text_data=json.dumps(rate))
        assert await next_of(sockets[0], "ack", where=lambda m: m["ref"] == "r-1") == \
            {"type": "ack", "ref": "r-1", "created": True}
    assert await adb(Rating.objects.filter(participant_id=people[0].pk).count)() == len(ids)
    await close_all(sockets)


def test_a_ref_used_for_another_kind_of_answer_is_refused():
    group, members = make_group()
    opinion_submit(participant=members[0], text=OPINIONS[0], ref="same")
    with pytest.raises(SubmissionError) as refused:
        critique_submit(participant=members[0], text="A critique", ref="same")
    assert refused.value.code == "invalid"
    assert not Critique.objects.exists()


def test_a_failed_submission_leaves_no_receipt_so_its_retry_is_judged_afresh():
    group, members = make_group()
    with pytest.raises(SubmissionError):
        opinion_submit(participant=members[0], text="two words", ref="short")  # fewer than 3 words
    assert not SubmissionReceipt.objects.exists()
    assert opinion_submit(participant=members[0], text=OPINIONS[0], ref="short").created is True


def lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # inside a transaction the view is read once otherwise
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0]


def test_the_same_ref_sent_twice_at_once_is_stored_once_and_both_get_the_original_ack():
    """A reload while the first submission is still in flight: the page's second copy (same ref) must neither
    store a second row nor fail; it waits for the first and gets its ack."""
    group, members = make_group()
    member = Participant.objects.get(pk=members[0].pk)
    results, errors = [], []

    def submit():
        try:
            results.append(opinion_submit(participant=member, text=OPINIONS[0], ref="in-flight"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    with transaction.atomic():
        Group.objects.select_for_update().get(pk=group.pk)  # hold the group lock: both copies are in flight
        threads = [threading.Thread(target=submit) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while lock_waiters() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        # one waits for the group lock, the other for the first one's receipt
        assert lock_waiters() == 2, (errors, results)
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert sorted((r.created, r.replayed) for r in results) == [(True, False), (True, True)]
    assert Opinion.objects.filter(participant=member).count() == 1
    assert SubmissionReceipt.objects.filter(participant=member).count() == 1


def test_bots_and_callers_without_a_ref_are_unchanged():
    group, members = make_group()
    assert opinion_submit(participant=members[0], text=OPINIONS[0]).created is True
    assert opinion_submit(participant=members[0], text=OPINIONS[0]).created is False
    assert not SubmissionReceipt.objects.exists()
