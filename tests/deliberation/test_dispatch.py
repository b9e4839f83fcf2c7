"""deliberation/dispatch.py: generation is sent by name after commit; the demo's in-process worker gets it instead."""
from __future__ import annotations

import logging

import pytest
from django.db import transaction

from deliberation import dispatch


@pytest.fixture
def no_worker(monkeypatch):
    monkeypatch.setattr(dispatch, "_in_process_handoff", None)


@pytest.mark.django_db(transaction=True)
def test_the_in_process_worker_gets_the_job_after_commit(settings, no_worker):
    settings.IN_PROCESS_WORKER = True
    got = []
    dispatch.register_in_process_worker(lambda **job: got.append(job))
    with transaction.atomic():
        dispatch.enqueue_generation(group_id=7, round=2)
        assert got == []  # nothing leaves before the commit
    assert got == [{"group_id": 7, "round": 2}]


@pytest.mark.django_db(transaction=True)
def test_without_a_running_in_process_worker_the_job_is_logged_not_lost_silently(settings, no_worker, caplog):
    settings.IN_PROCESS_WORKER = True
    with caplog.at_level(logging.ERROR, logger="deliberation.dispatch"):
        dispatch.enqueue_generation(group_id=7, round=1)
    assert "in-process worker not running" in caplog.text
