"""Drafts of many sockets written together (deliberation/drafts.py, services.drafts_save): one statement for a
batch, each draft's own outcome, no draft lost to another's refusal, and the ack only after the commit."""
from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async as adb
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.errors import SubmissionError
from deliberation import services
from deliberation.drafts import DraftBatch
from deliberation.models import Draft, Group
from deliberation.services import DraftWrite, drafts_save
from participants.models import Participant

from ..factories import make_group, make_study

pytestmark = pytest.mark.django_db


def stored(member, phase="opinion"):
    return Draft.objects.filter(participant=member, phase=phase).values_list("payload", flat=True).first()


def statements(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries
            if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN", "COMMIT"))]


def test_a_batch_is_one_statement_and_each_draft_gets_its_own_outcome():
    group, members = make_group(make_study(slug="batch-a", max_group_size=3, min_group_size=3), n=3)
    other, others = make_group(make_study(slug="batch-b", max_group_size=3, min_group_size=3), n=3)
    Group.objects.filter(pk=other.pk).update(phase="generating")  # the phase moved on: nothing stored there
    Participant.objects.filter(pk=members[2].pk).update(taken_over_at=timezone.now())
    writes = [DraftWrite(members[0].pk, group.pk, "opinion", {"text": "first member, first words"}),
              DraftWrite(members[1].pk, group.pk, "opinion", {"text": "second member"}),
              DraftWrite(members[2].pk, group.pk, "opinion", {"text": "a seat taken over"}),
              DraftWrite(others[0].pk, other.pk, "opinion", {"text": "too late"}),
              DraftWrite(others[1].pk, group.pk, "opinion", {"text": "not this member's group"}),
              DraftWrite(members[0].pk, group.pk, "critique", {"text": "not an open phase"}),
              DraftWrite(members[0].pk, group.pk, "opinion", {"text": "first member, newer words"})]
    with CaptureQueriesContext(connection) as captured:
        outcomes = drafts_save(writes)
    assert len(statements(captured)) == 1, statements(captured)
    assert outcomes[:2] == [True, True] and outcomes[3] is False and outcomes[5] is False and outcomes[6] is True
    assert isinstance(outcomes[2], SubmissionError) and outcomes[2].code == "taken_over"
    assert isinstance(outcomes[4], SubmissionError) and outcomes[4].code == "not_in_group"
    assert stored(members[0]) == {"text": "first member, newer words"}  # the newest of one member's drafts
    assert stored(members[1]) == {"text": "second member"}
    assert stored(members[2]) is None and stored(others[0]) is None and stored(others[1]) is None
    assert stored(members[0], "critique") is None


@pytest.fixture
def refuse_poisoned_drafts():
    with connection.cursor() as cursor:
        cursor.execute("""
            CREATE FUNCTION test_refuse_poison_draft() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.payload->>'text' LIKE '%POISON%' THEN
                    RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_refuse_poison_draft BEFORE INSERT OR UPDATE ON deliberation_draft
                FOR EACH ROW EXECUTE FUNCTION test_refuse_poison_draft();
        """)
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER test_refuse_poison_draft ON deliberation_draft; "
                       "DROP FUNCTION test_refuse_poison_draft();")


def test_a_draft_the_database_refuses_loses_no_other_draft_of_its_batch(refuse_poisoned_drafts):
    group, members = make_group(n=3)
    writes = [DraftWrite(members[0].pk, group.pk, "opinion", {"text": "a good draft"}),
              DraftWrite(members[1].pk, group.pk, "opinion", {"text": "a POISON draft"}),
              DraftWrite(members[2].pk, group.pk, "opinion", {"text": "another good draft"})]
    with pytest.raises(Exception, match="refused by the test"):
        drafts_save([writes[1]])  # alone: the caller gets the database's error
    outcomes = drafts_save(writes)
    assert outcomes[0] is True and outcomes[2] is True and "refused by the test" in str(outcomes[1])
    assert stored(members[0]) == {"text": "a good draft"} and stored(members[2]) == {"text": "another good draft"}
    assert stored(members[1]) is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_drafts_arriving_while_a_batch_is_written_go_together_in_the_next_and_each_is_answered(monkeypatch):
    group, members = await adb(make_group)(n=5)
    batches = []
    real = services.drafts_save

    def recorded(writes):
        batches.append(len(writes))
        return real(writes)

    batch = DraftBatch(write_many=recorded)
    results = await asyncio.gather(*(batch.save(DraftWrite(m.pk, group.pk, "opinion", {"text": f"words {i}"}))
                                     for i, m in enumerate(members)))
    assert results == [True] * 5
    assert sum(batches) == 5 and len(batches) < 5, batches  # the first alone, at once; the rest together
    for i, m in enumerate(members):
        assert await adb(stored)(m) == {"text": f"words {i}"}
    with pytest.raises(SubmissionError):
        await batch.save(DraftWrite(members[0].pk, None, "opinion", {"text": "from a page showing no group"}))
