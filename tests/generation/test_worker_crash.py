"""kill -9 a real Celery generation worker mid-task: the task runs again on a new worker and the round
still gets exactly one set of candidates (acks_late + idempotent service)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection

from deliberation.models import Candidate, Group, GroupEvent
from deliberation.services import opinion_submit

from ..e2e.stack import ROOT, database_url
from ..factories import make_group, make_study
from ..waiting import wait_for

pytestmark = [pytest.mark.model, pytest.mark.django_db(transaction=True)]
OPINIONS = [
    "Food taxes hit poor families hardest, so removing them is fair and simple.",
    "We need the revenue for schools; removing food taxes would cut public services.",
    "Remove taxes on basic groceries but keep them on sweets and luxury foods.",
]


def start_worker(log_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test",
           "DATABASE_URL": database_url(connection.settings_dict), "REDIS_URL": settings.REDIS_URL,
           "CELERY_VISIBILITY_TIMEOUT": "6", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "generation",
                             "--pool=solo", "--loglevel=INFO", "--without-heartbeat", "--without-mingle",
                             "--without-gossip"], cwd=ROOT, env=env, stdout=open(log_path, "w"),
                            stderr=subprocess.STDOUT)


def test_killed_worker_task_reruns_without_a_second_set_of_candidates(tmp_path):
    study = make_study(slug="crash", generation_backend="embedded", num_candidates=3,
                       generation_params={"max_new_tokens": 120, "temperature": 0.7})
    group, members = make_group(study, n=3)
    for member, text in zip(members, OPINIONS):
        opinion_submit(participant=member, text=text)  # enqueues on queue "generation" after commit
    started = GroupEvent.objects.filter(group=group, kind="generation_started")

    first = start_worker(tmp_path / "worker1.log")
    try:
        wait_for(lambda: started.exists(), 120, "the first worker to start the task")
        time.sleep(2)  # mid-generation
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    assert not Candidate.objects.filter(group=group).exists()

    second = start_worker(tmp_path / "worker2.log")
    try:
        # generous: the second worker loads the model and writes 3 candidates on one thread of a shared machine
        wait_for(lambda: Group.objects.get(pk=group.pk).phase == "rating", 480,
                 lambda: "the task to run again on a new worker:\n" + (tmp_path / "worker1.log").read_text()[-1500:]
                 + "\n--- second worker ---\n" + (tmp_path / "worker2.log").read_text()[-1500:])
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    assert started.count() == 2
    assert Candidate.objects.filter(group=group, round=1).count() == 3
    assert sorted(Candidate.objects.filter(group=group).values_list("index", flat=True)) == [0, 1, 2]
