"""Submissions under concurrency and at deadlines, on the real PostgreSQL (issue 15, item 9).

- Two submissions of one member at once (a double click, two tabs, a retry after a reconnect): the check for a
  stored answer runs under the group's row lock, so the second is answered, never a server error.
- A different second answer says so (``already_submitted``) and the stored one stays as it was.
- One draft the database refuses does not stall its group at the deadline: each draft has its own savepoint.
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction

from deliberation.models import Candidate, Critique, Group, GroupEvent, Opinion, Rating
from deliberation.services import SubmissionError, critique_submit, draft_save, opinion_submit, ratings_submit
from deliberation.sweeper import sweep
from generation.services import candidates_generate

from ..factories import make_group

pytestmark = pytest.mark.django_db(transaction=True)

OPINIONS = [
    "Food taxes hit poor families hardest, so removing them is fair and simple.",
    "We need the revenue for schools; removing food taxes would cut public services.",
    "Remove taxes on basic groceries but keep them on sweets and luxury foods.",
]


def _waiting_on_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # the view is a snapshot per transaction otherwise
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def concurrently(group: Group, *calls) -> list:
    """Run ``calls`` on threads of their own (each with its own database connection) so that they all reach
    the group's row lock while this test holds it, then let them go at once. Returns what each returned or
    raised."""
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            results[i] = call()
        except Exception as exc:  # the assertion below shows what was raised
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    with transaction.atomic():
        Group.objects.select_for_update().get(pk=group.pk)
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while _waiting_on_locks() < len(calls):  # every call now waits for the lock this test holds
            assert time.monotonic() < deadline, f"{_waiting_on_locks()} of {len(calls)} reached the lock: {results}"
            time.sleep(0.02)
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_two_identical_opinions_at_once_store_one_and_both_are_answered():
    group, members = make_group(n=3)
    results = concurrently(group, *[lambda: opinion_submit(participant=members[0], text=OPINIONS[0])] * 2)
    assert not any(isinstance(r, Exception) for r in results), results
    assert sorted(r.created for r in results) == [False, True]
    assert list(Opinion.objects.filter(participant=members[0]).values_list("text", flat=True)) == [OPINIONS[0]]
    assert GroupEvent.objects.filter(group=group, kind="opinion_submitted").count() == 1


def test_two_different_opinions_at_once_store_the_first_and_refuse_the_second_clearly():
    group, members = make_group(n=3)
    results = concurrently(group, lambda: opinion_submit(participant=members[0], text=OPINIONS[0]),
                           lambda: opinion_submit(participant=members[0], text=OPINIONS[1]))
    created = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(created) == 1 and created[0].created, results
    assert len(refused) == 1 and isinstance(refused[0], SubmissionError), results
    assert refused[0].code == "already_submitted"
    assert Opinion.objects.get(participant=members[0]).text == created[0].stored


def test_the_last_opinion_sent_twice_at_once_is_answered_though_the_phase_has_moved_on():
    """The first of the two completes the phase; the second must still get 'stored', not 'wrong phase'."""
    group, members = make_group(n=3)
    for member, text in zip(members[:2], OPINIONS):
        opinion_submit(participant=member, text=text)
    results = concurrently(group, *[lambda: opinion_submit(participant=members[2], text=OPINIONS[2])] * 2)
    assert not any(isinstance(r, Exception) for r in results), results
    assert sorted(r.created for r in results) == [False, True]
    group.refresh_from_db()
    assert group.phase == "generating" and Opinion.objects.filter(group=group).count() == 3


def _to_rating(group, members):
    for member, text in zip(members, OPINIONS):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    return list(Candidate.objects.filter(group=group, round=1).order_by("index").values_list("id", flat=True))


def test_two_identical_ratings_at_once_store_one_set():
    group, members = make_group(n=3)
    ids = _to_rating(group, members)

    def rate():
        return ratings_submit(participant=members[0], round=1, ranking=ids,
                              ratings={cid: {"agreement": 6, "quality": 5} for cid in ids})

    results = concurrently(group, rate, rate)
    assert not any(isinstance(r, Exception) for r in results), results
    assert sorted(r.created for r in results) == [False, True]
    assert Rating.objects.filter(participant=members[0]).count() == len(ids)


def test_a_different_resubmission_says_so_and_the_stored_answer_stays():
    group, members = make_group(n=3)
    assert opinion_submit(participant=members[0], text=OPINIONS[0]).created
    same = opinion_submit(participant=members[0], text="  " + OPINIONS[0] + "\n")  # the same after cleaning
    assert not same.created and same.stored == OPINIONS[0]
    with pytest.raises(SubmissionError) as exc:
        opinion_submit(participant=members[0], text=OPINIONS[1])
    assert exc.value.code == "already_submitted" and "not stored" in exc.value.message
    assert Opinion.objects.get(participant=members[0]).text == OPINIONS[0]

    for member, text in zip(members[1:], OPINIONS[1:]):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    ids = list(Candidate.objects.filter(group=group, round=1).values_list("id", flat=True))
    mine = {cid: {"agreement": 6, "quality": 5} for cid in ids}
    assert ratings_submit(participant=members[0], round=1, ratings=mine, ranking=ids).created
    assert not ratings_submit(participant=members[0], round=1, ratings=mine, ranking=ids).created
    with pytest.raises(SubmissionError) as exc:
        ratings_submit(participant=members[0], round=1, ratings=mine, ranking=ids[::-1])
    assert exc.value.code == "already_submitted"
    assert dict(Rating.objects.filter(participant=members[0]).values_list("candidate_id", "rank")) == \
        {cid: i + 1 for i, cid in enumerate(ids)}

    for member in members[1:]:
        ratings_submit(participant=member, round=1, ratings=mine, ranking=ids)
    assert critique_submit(participant=members[0], text="Too vague about schools.").created
    assert not critique_submit(participant=members[0], text="Too vague about schools.").created
    with pytest.raises(SubmissionError) as exc:
        critique_submit(participant=members[0], text="Something else entirely.")
    assert exc.value.code == "already_submitted"
    assert Critique.objects.get(participant=members[0]).text == "Too vague about schools."


def test_a_late_answer_after_the_draft_was_stored_at_the_deadline_says_so():
    group, members = make_group(n=3)
    opinion_submit(participant=members[0], text=OPINIONS[0])
    draft_save(participant=members[1], phase="opinion", payload={"text": "Half-written thought about taxes"})
    group.refresh_from_db()
    sweep(now=group.deadline + timedelta(seconds=1))
    with pytest.raises(SubmissionError) as exc:
        opinion_submit(participant=members[1], text="Half-written thought about taxes, now finished.")
    assert exc.value.code == "already_submitted" and "time for this step ran out" in exc.value.message
    assert Opinion.objects.get(participant=members[1]).text == "Half-written thought about taxes"


@pytest.fixture
def refuse_poisoned_answers():
    """A PostgreSQL trigger that refuses some answers, as a constraint would: one opinion containing 'POISON'
    (an integrity error) and one containing 'OVERFLOW' (a data error)."""
    with connection.cursor() as cursor:
        cursor.execute("""
            CREATE FUNCTION test_refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.text LIKE '%POISON%' THEN
                    RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation';
                END IF;
                IF NEW.text LIKE '%OVERFLOW%' THEN
                    RAISE EXCEPTION 'too long for the test' USING ERRCODE = 'string_data_right_truncation';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_refuse_poison BEFORE INSERT ON deliberation_opinion
                FOR EACH ROW EXECUTE FUNCTION test_refuse_poison();
        """)
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER test_refuse_poison ON deliberation_opinion; "
                       "DROP FUNCTION test_refuse_poison();")


def test_one_draft_the_database_refuses_does_not_stall_the_group_at_its_deadline(refuse_poisoned_answers):
    group, members = make_group(n=4)
    draft_save(participant=members[0], phase="opinion", payload={"text": "A POISON draft the database refuses"})
    draft_save(participant=members[1], phase="opinion", payload={"text": "An OVERFLOW draft it cannot hold"})
    draft_save(participant=members[2], phase="opinion", payload={"text": "A good draft about food taxes"})
    draft_save(participant=members[3], phase="opinion", payload={"text": "Another good draft about taxes"})
    group.refresh_from_db()
    sweep(now=group.deadline + timedelta(seconds=1))
    group.refresh_from_db()
    assert group.phase == "generating"
    assert set(Opinion.objects.filter(group=group).values_list("participant_id", flat=True)) == \
        {members[2].pk, members[3].pk}
    discarded = GroupEvent.objects.filter(group=group, kind="draft_discarded")
    assert sorted(e.payload["participant_id"] for e in discarded) == sorted([members[0].pk, members[1].pk])
    assert GroupEvent.objects.filter(group=group, kind="stored_by_timeout").count() == 2
