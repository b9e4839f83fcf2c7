"""Restart Redis (channel layer and Celery broker) mid-session: a private redis-server without persistence
is killed -9 while groups are rating and started again empty. Group memberships in the channel layer and
any queued message are gone; the bots' sockets, the consumers, the worker and beat must recover, and the
session must complete with every write stored once. A generation task queued while Redis was down is lost;
the sweeper queues it again (GENERATION_REQUEUE_SECONDS, shortened here)."""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from bots.client import BotConfig, run_bots
from deliberation.models import Group, GroupEvent, Rating
from deliberation.sweeper import sweep

from ..e2e.services import private_redis
from ..e2e.stack import Stack, database_url
from ..factories import make_group, make_study
from ..waiting import wait_for
from .ledger import compare

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
BOTS = 6


def test_session_survives_a_redis_restart(tmp_path):
    study = make_study(slug="redis-restart", generation_backend="extractive", max_group_size=3, min_group_size=3,
                       num_candidates=2, opinion_seconds=150, rating_seconds=150, critique_seconds=150,
                       final_rating_seconds=150, lobby_timeout_seconds=150)
    groups = Group.objects.filter(study=study)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with private_redis() as redis, Stack(database_url(connection.settings_dict), redis.url, tmp_path,
                                              env={"GENERATION_REQUEUE_SECONDS": "10"}) as stack:
        config = BotConfig(server=stack.base, study=study.slug, participants=BOTS, seed=4, think=(1.0, 3.0),
                           ping_seconds=5.0, timeout=200.0, stagger=0.1, progress=False, run_id="redis")
        box: dict = {}
        bots = threading.Thread(target=lambda: box.update(summary=run_bots(config)), daemon=True)
        bots.start()
        wait_for(lambda: groups.filter(phase="rating").exists(), 120, "a group in the rating phase", poll=0.05)
        phases = sorted(groups.values_list("phase", flat=True))
        ratings_before = Rating.objects.count()
        down = redis.restart(down=2.0)
        recovered = wait_for(lambda: Rating.objects.count() > ratings_before, 90,
                             "a rating stored after the restart")
        bots.join(timeout=220)
        assert not bots.is_alive(), "bots did not finish"
    summary = box["summary"]

    assert not summary["failures"], summary["failures"]
    assert summary["completed"] == BOTS, [(b["index"], b["status"]) for b in summary["bots"]]
    assert set(groups.values_list("phase", "outcome")) == {("done", "completed")}
    assert groups.count() == BOTS // 3
    with connection.cursor() as cursor:
        ledger = compare(summary["bots"], cursor, study.pk)
    assert ledger["lost"] == [] and ledger["duplicated"] == [] and ledger["unlogged"] == [], ledger
    assert not any(ledger["by_timeout"].values()), ledger["by_timeout"]
    assert ledger["db_writes"] == ledger["logged_writes"] == 4 * BOTS
    assert ledger["db_rating_rows"] == ledger["logged_rating_rows"] == Rating.objects.count()
    requeued = GroupEvent.objects.filter(group__study=study, kind="generation_requeued").count()
    print(f"\nRedis restart (groups {phases}; redis down {down:.1f} s): {summary['completed']}/{BOTS} bots completed, "
          f"{summary['reconnects']} reconnects; writes in DB {ledger['db_writes']} = bots' logs "
          f"{ledger['logged_writes']}, lost 0, duplicated 0; generation requeued {requeued}x; "
          f"first rating stored {recovered:.1f} s after Redis was back; session {summary['seconds']} s")


def test_sweeper_queues_again_a_generation_task_the_broker_lost(settings):
    import redis

    settings.GENERATION_REQUEUE_SECONDS = 30
    study = make_study(slug="requeue", generation_backend="extractive")
    group, members = make_group(study, n=3)
    from deliberation.services import opinion_submit

    for member in members:
        opinion_submit(participant=member, text=f"Opinion of {member.pk} about taxes on food and groceries.")
    group.refresh_from_db()
    assert group.phase == "generating"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    assert broker.llen("generation") == 1
    broker.flushdb()  # Redis restarted empty: the queued task is gone
    requeued = GroupEvent.objects.filter(group=group, kind="generation_requeued")

    def waited(seconds: float) -> None:  # the group has been generating this long (and any requeue was then)
        Group.objects.filter(pk=group.pk).update(phase_started_at=timezone.now() - timedelta(seconds=seconds))
        # The event log is append-only (a trigger refuses UPDATE); backdating an event is this test's time
        # travel, not a change of evidence, so the trigger is off for just this statement.
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE deliberation_groupevent DISABLE TRIGGER USER")
            try:
                requeued.update(created_at=timezone.now() - timedelta(seconds=seconds - 1))
            finally:
                cursor.execute("ALTER TABLE deliberation_groupevent ENABLE TRIGGER USER")

    waited(25)
    assert sweep().generation_requeued == 0  # not yet
    waited(31)
    assert sweep().generation_requeued == 1
    assert requeued.count() == 1 and broker.llen("generation") == 1
    assert sweep().generation_requeued == 0  # once per window
    waited(65)
    assert sweep().generation_requeued == 1 and requeued.count() == 2
    GroupEvent.objects.create(group=group, kind="generation_started", payload={"round": 1})
    waited(130)
    assert sweep().generation_requeued == 0  # a worker has it (a dead worker's task is redelivered instead)
    assert broker.llen("generation") == 2
    broker.close()
