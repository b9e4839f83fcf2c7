"""Bots through screening and the questionnaire against the real stack (the ASGI server and a Celery worker with
beat, on the test database and Redis): ``run_bots --screening pass`` answers the screening questions from the
study's answer key, deliberates and answers the questionnaire; ``--screening fail`` ends screened out."""
from __future__ import annotations

import io
import json

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from bots.client import BotConfig
from bots.client import run_bots as run_bots_plain
from deliberation.models import Group, Study
from participants.models import (
    Participant,
    QuestionnaireAnswer,
    QuestionnaireItem,
    ScreeningAnswer,
    ScreeningQuestion,
)
from participants.questionnaire import questionnaire_items
from participants.services import simulated_join_token

from ..e2e.stack import database_url, running_stack
from .test_screening import screened_study

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def run_bots(base: str, slug: str, participants: int, *extra: str) -> dict:
    out = io.StringIO()
    call_command("run_bots", "--study", slug, "--participants", str(participants), "--server", base, "--json",
                 "--no-progress", "--think", "0.1:0.4", "--stagger", "0.1", "--timeout", "240", *extra, stdout=out)
    summary = json.loads(out.getvalue())
    print(json.dumps({k: v for k, v in summary.items() if k != "bots"}))  # shown with pytest -s
    return summary


def screened_study_with_questionnaire(slug: str):
    study, colour, attention = screened_study(slug=slug, attempts=2)
    Study.objects.filter(pk=study.pk).update(  # test_bots.short_study's timing: groups of three, 60 s phases
        max_group_size=3, min_group_size=3, opinion_seconds=60, rating_seconds=60, critique_seconds=60,
        final_rating_seconds=60, lobby_timeout_seconds=120)
    for order, (key, kind, extra) in enumerate([
            ("trust", "likert", {"scale_points": 7, "options": ["Disagree", "Agree"]}),
            ("device", "single", {"options": ["Phone", "Laptop", "Tablet"]}),
            ("apps", "multiple", {"options": ["Mail", "Chat", "News"], "required": False}),
            ("hours", "number", {"min_value": 0, "max_value": 24}),
            ("comments", "text", {"required": False})], start=1):
        QuestionnaireItem.objects.create(study=study, order=order, key=key, text=f"Question {key}?", kind=kind,
                                         **extra)
    return study, colour, attention


def test_bots_pass_screening_deliberate_and_answer_the_questionnaire_or_fail_screening(tmp_path):
    study, colour, attention = screened_study_with_questionnaire("sb-pass")
    failing, _, _ = screened_study_with_questionnaire("sb-fail")
    ScreeningQuestion.objects.filter(study=failing).update(attempts_allowed=2)  # two wrong attempts at each
    with running_stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path) as base:
        passed = run_bots(base, "sb-pass", 3, "--seed", "11")
        failed = run_bots(base, "sb-fail", 2, "--seed", "12", "--screening", "fail")
        screened_study(slug="sb-plain")
        plain = run_bots_plain(BotConfig(server=base, study="sb-plain", participants=1, seed=1, think=(0.1, 0.2),
                                         progress=False, simulated_token=simulated_join_token("sb-plain")))

    # pass: every bot answered the screening questions right at the first attempt, completed and answered
    assert not passed["failures"], passed["failures"]
    assert passed["completed"] == 3 and passed["screened_out"] == passed["unfinished"] == 0, passed
    assert passed["questionnaires"] == 3 and passed["completion_codes"] == {"DONE123": 3}
    assert {b["completion_page_code"] for b in passed["bots"]} == {"DONE123"}
    assert [b["screening_submissions"] for b in passed["bots"]] == [1, 1, 1]
    group = Group.objects.get(study=study)
    assert group.phase == "done" and group.outcome == "completed"
    items = questionnaire_items(study_id=study.pk)
    bots = {b["pid"]: b for b in passed["bots"]}
    people = list(Participant.objects.filter(study=study))
    assert len(people) == 3
    for p in people:
        assert p.status == "completed" and p.group_id == group.pk and p.is_simulated
        assert sorted(ScreeningAnswer.objects.filter(participant=p).values_list("question_id", "attempt", "correct")) \
            == sorted([(colour.pk, 1, True), (attention.pk, 1, True)])
        stored = dict(QuestionnaireAnswer.objects.filter(participant=p).values_list("item__key", "value"))
        assert set(stored) == {item.key for item in items} and None not in stored.values()  # every item answered
        sent = bots[p.recruitment_id]["questionnaire"]
        assert stored["device"] == sent["device"] and stored["trust"] == int(sent["trust"])
        assert stored["apps"] == sent["apps"] and stored["comments"] == sent["comments"]
        assert stored["hours"] == float(sent["hours"]) and 0 <= stored["hours"] <= 24
        assert stored["device"] in ("Phone", "Laptop", "Tablet") and 1 <= stored["trust"] <= 7

    # the plain client in "pass" mode without the answer key: a clear failure, and the participant waits at screening
    assert plain["completed"] == plain["screened_out"] == 0 and plain["unfinished"] == 1
    assert len(plain["failures"]) == 1 and "screening='pass' needs their correct answers" in plain["failures"][0]
    assert "screening_answers" in plain["failures"][0]
    assert Participant.objects.get(study__slug="sb-plain").status == "screening"

    # fail: a wrong answer on both attempts, the screened-out code, never a lobby or a group
    assert not failed["failures"], failed["failures"]
    assert failed["screened_out"] == 2 and failed["completed"] == failed["unfinished"] == 0, failed
    assert failed["completion_codes"] == {"SCREEN0": 2} and failed["questionnaires"] == 0
    assert {b["completion_page_code"] for b in failed["bots"]} == {"SCREEN0"}
    assert [b["screening_submissions"] for b in failed["bots"]] == [2, 2]  # wrong at both attempts
    assert failed["writes_sent"] == 0  # no websocket
    assert not Group.objects.filter(study=failing).exists()
    for p in Participant.objects.filter(study=failing):
        assert p.status == "screened_out" and p.group_id is None and p.lobby_entered_at is None
        assert p.completion_code == "SCREEN0"
        answers = list(ScreeningAnswer.objects.filter(participant=p).values_list("attempt", "correct"))
        assert sorted(answers) == [(1, False), (1, False), (2, False), (2, False)]
