"""Candidate generation through the service and the real Redis queue."""
from __future__ import annotations

import json

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction

from deliberation.dispatch import enqueue_generation
from deliberation.models import Candidate, GroupEvent
from deliberation.services import opinion_submit
from generation.backends.base import GenerationResult
from generation.backends.extractive import ExtractiveBackend
from generation.services import GenerationFailed, candidates_generate

from ..factories import make_group

pytestmark = pytest.mark.django_db(transaction=True)
OPINIONS = [
    "Food taxes hit poor families hardest, so removing them is fair and simple.",
    "We need the revenue for schools; removing food taxes would cut public services.",
    "Remove taxes on basic groceries but keep them on sweets and luxury foods.",
]


class FlakyBackend:
    """Test double: unusable output for the first attempt of every candidate, then a real baseline."""

    name = "flaky"
    model_id = "flaky-test-double"

    def __init__(self, bad_attempts=1):
        self.real = ExtractiveBackend()
        self.calls = []
        self.bad_attempts = bad_attempts

    def generate(self, requests):
        self.calls.append([r.seed for r in requests])
        if len(self.calls) <= self.bad_attempts:
            return [GenerationResult(text="  ", model_id=self.model_id, seed=r.seed, latency_ms=1.0,
                                     prompt_tokens=1, completion_tokens=0) for r in requests]
        return self.real.generate(requests)


def opinions_in(group, members):
    for member, text in zip(members, OPINIONS):
        opinion_submit(participant=member, text=text)


def test_unusable_output_is_retried_with_a_new_seed():
    group, members = make_group(n=3)
    opinions_in(group, members)
    backend = FlakyBackend(bad_attempts=1)
    assert candidates_generate(group_id=group.pk, round=1, backend=backend) == 2
    first, second = backend.calls
    assert set(first).isdisjoint(second)  # new seeds on the retry
    assert list(Candidate.objects.filter(group=group).values_list("attempts", flat=True)) == [2, 2]


def test_persistent_failure_is_recorded_for_the_monitor_and_group_keeps_waiting():
    group, members = make_group(n=3)
    opinions_in(group, members)
    with pytest.raises(GenerationFailed):
        candidates_generate(group_id=group.pk, round=1, backend=FlakyBackend(bad_attempts=99))
    group.refresh_from_db()
    assert group.phase == "generating" and "no usable statement" in group.generation_status
    assert GroupEvent.objects.filter(group=group, kind="generation_failed").exists()
    assert candidates_generate(group_id=group.pk, round=1) == 2  # the retry succeeds and clears the error
    group.refresh_from_db()
    assert group.phase == "rating" and group.generation_status == ""


def test_opinions_are_shuffled_anew_for_each_candidate_and_provenance_is_stored():
    group, members = make_group(n=3)
    group.study.num_candidates = 6
    group.study.save()
    opinions_in(group, members)
    candidates_generate(group_id=group.pk, round=1)
    orders = {tuple(c.opinion_order) for c in Candidate.objects.filter(group=group)}
    assert len(orders) > 1
    c = Candidate.objects.filter(group=group).first()
    assert c.prompt[0]["role"] == "system" and OPINIONS[0][:30] in json.dumps(c.prompt)
    assert c.seed and c.params["max_new_tokens"] == 160 and c.model_id == "extractive-baseline-v1"


def test_generation_is_queued_on_the_generation_queue_in_redis_after_commit():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("generation")
    with transaction.atomic():
        enqueue_generation(group_id=12345, round=1)
        assert client.llen("generation") == 0  # nothing leaves before the commit
    assert client.llen("generation") == 1
    message = json.loads(client.lpop("generation"))
    assert message["headers"]["task"] == "generation.tasks.generate_candidates"


def test_http_backend_down_then_back_group_waits_monitor_shows_error_then_continues(flaky_server):
    from deliberation.monitor import study_monitor_state
    from deliberation.selectors import participant_snapshot
    from generation.backends import get_backend

    from ..e2e.stack import free_port
    from .test_openai_backend import Flaky

    group, members = make_group(n=3)
    opinions_in(group, members)
    down = get_backend("openai", base_url=f"http://127.0.0.1:{free_port()}/v1", max_attempts=2, backoff_seconds=0.01)
    with pytest.raises(GenerationFailed, match="unavailable after 2 attempts"):
        candidates_generate(group_id=group.pk, round=1, backend=down)
    snapshot = participant_snapshot(members[0])
    assert snapshot["group"]["phase"] == "generating" and snapshot["group"]["generation_error"] is True
    assert "unavailable" in study_monitor_state(group.study)["groups"][0]["generation_error"]
    Flaky.calls = [None, None]  # the stub's next answer is a success
    back = get_backend("openai", base_url=flaky_server, backoff_seconds=0.01)
    assert candidates_generate(group_id=group.pk, round=1, backend=back) == 2
    group.refresh_from_db()
    assert group.phase == "rating" and group.generation_status == ""
    assert set(Candidate.objects.filter(group=group).values_list("backend", flat=True)) == {"openai"}


def test_a_requeued_task_stands_down_while_another_claim_writes_the_round():
    """The sweeper re-queues a round whose task waited over GENERATION_REQUEUE_SECONDS in a long queue. The copy
    must not generate the same statements a second time while the first task is writing them; a retry or a
    redelivery of the same task (same claim) goes on, and so does anyone once the first claim failed or expired."""


    group, members = make_group(n=3)
    opinions_in(group, members)
    GroupEvent.objects.create(group=group, kind="generation_started", payload={"round": 1, "claim": "task-a"})
    backend = FlakyBackend(bad_attempts=0)
    assert candidates_generate(group_id=group.pk, round=1, backend=backend, claim="task-b") == 0
    assert backend.calls == [] and not Candidate.objects.filter(group=group).exists()
    # the same claim (a Celery retry or a redelivery after the worker died) carries on
    assert candidates_generate(group_id=group.pk, round=1, backend=backend, claim="task-a") == 2
    assert len(backend.calls) == 1


def test_a_failed_or_expired_claim_does_not_block_the_next_task(settings):
    from datetime import timedelta

    from django.utils import timezone

    group, members = make_group(n=3)
    opinions_in(group, members)
    with pytest.raises(GenerationFailed):
        candidates_generate(group_id=group.pk, round=1, backend=FlakyBackend(bad_attempts=99), claim="task-a")
    backend = FlakyBackend(bad_attempts=0)
    assert candidates_generate(group_id=group.pk, round=1, backend=backend, claim="task-b") == 2  # a failed claim

    other, others = make_group(group.study, n=3)
    opinions_in(other, others)
    stale = GroupEvent.objects.create(group=other, kind="generation_started", payload={"round": 1, "claim": "dead"})
    old = timezone.now() - timedelta(seconds=settings.GENERATION_SOFT_TIME_LIMIT + 120)
    with connection.cursor() as cursor:
        # the event log is append-only (a trigger refuses UPDATE); backdate this one row with the trigger off
        cursor.execute("ALTER TABLE deliberation_groupevent DISABLE TRIGGER USER")
        try:
            GroupEvent.objects.filter(pk=stale.pk).update(created_at=old)
        finally:
            cursor.execute("ALTER TABLE deliberation_groupevent ENABLE TRIGGER USER")
    assert candidates_generate(group_id=other.pk, round=1, backend=FlakyBackend(bad_attempts=0), claim="new") == 2
