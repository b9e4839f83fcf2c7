"""Simulated judges drive the real judge services; the times are the server's clock, pauses are real."""
from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from legibility import services
from legibility.models import JudgeItem, JudgeSession
from legibility.simulation import SIMULATED_STUDY_ID, simulate_judges

from .factories import judge, make_study

pytestmark = pytest.mark.django_db


class FakeClock:
    """The services' clock, moved only by the simulated judge's pause (as real time would be)."""

    def __init__(self):
        self.now = timezone.now()
        self.pauses = []

    def __call__(self):
        return self.now

    def sleep(self, seconds: float):
        self.pauses.append(seconds)
        self.now += timedelta(seconds=seconds)


@pytest.mark.django_db(transaction=True, reset_sequences=True)  # each judge's queue is seeded with its row id
def test_command_answers_every_item_through_the_services_and_flags_coin_judges():
    study = make_study(n_problems=24, items_per_session=20, gold_share=0.2)
    out = io.StringIO()
    call_command("simulate_judges", "--study", study.slug, "--judges", "3", "--accuracy", "0.9", "--seed", "4",
                 "--chance-judges", "1", stdout=out, verbosity=0)
    summary = json.loads(out.getvalue())
    assert summary["judges"] == 4 and summary["answered"] == 80 and summary["timed_out"] == 0
    assert summary["flagged_among_chance_judges"] == 1
    sessions = JudgeSession.objects.filter(study=study)
    assert sessions.count() == 4 and {s.status for s in sessions} == {"completed"}
    assert {s.recruitment_study_id for s in sessions} == {SIMULATED_STUDY_ID}
    items = JudgeItem.objects.filter(session__study=study)
    # Every item was shown (server timer started) and answered before its deadline, timed by the server.
    assert all(i.started_at and i.answered_at and i.started_at <= i.answered_at <= i.deadline for i in items)
    assert all(i.response_ms == round((i.answered_at - i.started_at).total_seconds() * 1000) for i in items)
    careful = [services.session_stats(s) for s in sessions if s.recruitment_id != "sim-4-3"]
    assert all(s.accuracy >= 0.75 and not s.flagged for s in careful)
    # Idempotent: the same seed resumes the same, finished judges.
    call_command("simulate_judges", "--study", study.slug, "--judges", "3", "--accuracy", "0.9", "--seed", "4",
                 "--chance-judges", "1", stdout=io.StringIO(), verbosity=0)
    assert JudgeSession.objects.filter(study=study).count() == 4 and items.count() == 80


def test_pauses_happen_between_showing_and_answering_and_long_ones_time_out(monkeypatch):
    study = make_study(items_per_session=6, gold_share=0, seconds_per_item=10)
    clock = FakeClock()
    monkeypatch.setattr(services, "clock", clock)
    [result] = simulate_judges(study=study, judges=1, accuracy=1.0, seed=1, think_seconds=16, sleep=clock.sleep)
    assert len(clock.pauses) == 6
    items = list(JudgeItem.objects.filter(session_id=result.session_id).order_by("position"))
    for item, pause in zip(items, clock.pauses, strict=True):
        if pause > 10:  # past the server's deadline: recorded as a timeout, as for a real judge
            assert item.timed_out and item.answer is None
        else:
            assert item.response_ms == round(pause * 1000) and item.answer == item.solution.correct
    assert result.timed_out == sum(p > 10 for p in clock.pauses) > 0
    assert result.answered == result.right == 6 - result.timed_out


def test_refusals():
    study = make_study(items_per_session=4, gold_share=0)
    with pytest.raises(ValueError, match="probability"):
        simulate_judges(study=study, judges=1, accuracy=1.5)
    with pytest.raises(ValueError, match="at least one judge"):
        simulate_judges(study=study, judges=0, accuracy=0.8)
    judge(study, "a-real-person")
    with pytest.raises(CommandError, match="has real judges"):
        call_command("simulate_judges", "--study", study.slug, "--judges", "1", "--accuracy", "0.8", verbosity=0)
    with pytest.raises(CommandError, match="no legibility study"):
        call_command("simulate_judges", "--study", "nope", "--judges", "1", "--accuracy", "0.8", verbosity=0)
