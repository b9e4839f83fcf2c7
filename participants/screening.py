"""Screening: comprehension or attention questions between consent and the lobby.

A study with ``ScreeningQuestion`` rows sends a consenting participant to status ``screening``
(``services._enter_lobby``). Each submission stores one ``ScreeningAnswer`` per open question and attempt. A
participant who answers every question correctly enters the lobby (``signals.lobby_entered``, as a consent
without screening does); one who has used up a question's ``attempts_allowed`` without the correct answer is
``screened_out`` with the study's screened-out completion code. Both outcomes are kept as ``ParticipantEvent``s.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy

from core.errors import SubmissionError

from . import signals
from .models import Participant, ParticipantEvent, ScreeningAnswer, ScreeningQuestion


@dataclass(frozen=True)
class ScreeningResult:
    status: str  # the participant's status afterwards: screening (try again), lobby, screened_out, or another
    wrong: tuple[int, ...] = ()  # question ids answered wrongly this time, with attempts left
    attempts_left: dict[int, int] = field(default_factory=dict)  # open question id -> attempts left


def screening_open(*, participant: Participant) -> list[tuple[ScreeningQuestion, int]]:
    """The questions this participant has not yet answered correctly, each with the attempts they have left."""
    questions = list(ScreeningQuestion.objects.filter(study_id=participant.study_id))
    answered = {row["question_id"]: row for row in ScreeningAnswer.objects.filter(participant=participant)
                .values("question_id").annotate(n=Count("id"), right=Count("id", filter=Q(correct=True)))}
    found = []
    for question in questions:
        row = answered.get(question.pk, {"n": 0, "right": 0})
        if row["right"]:
            continue
        found.append((question, max(0, question.attempts_allowed - row["n"])))
    return found


def screening_answer_key(*, study_id: int) -> dict[int, str]:
    """Question id -> correct option of every screening question of the study (never shown to participants; the
    simulated participants of ``manage.py run_bots`` need it to pass or to fail on purpose)."""
    return dict(ScreeningQuestion.objects.filter(study_id=study_id).values_list("id", "correct_option"))


def screening_submit(*, participant: Participant, answers: dict[int, str]) -> ScreeningResult:
    """Store one attempt at every open question (``answers``: question id -> the option chosen) and decide.

    Every open question needs an answer that is one of its options, else ``SubmissionError("bad_answer")`` and
    nothing is stored. A participant no longer screening (a second tab, the back button) changes nothing."""
    now = timezone.now()
    with transaction.atomic():
        participant = Participant.objects.select_for_update().select_related("study").get(pk=participant.pk)
        if participant.status != Participant.Status.SCREENING:
            return ScreeningResult(status=participant.status)
        open_questions = screening_open(participant=participant)
        for question, _ in open_questions:
            if answers.get(question.pk) not in question.options:
                raise SubmissionError("bad_answer", gettext_lazy(
                    "Please choose one of the options for every question."))
        wrong, failed, left = [], [], {}
        for question, attempts_left in open_questions:
            chosen = answers[question.pk]
            attempt = question.attempts_allowed - attempts_left + 1
            correct = chosen == question.correct_option
            ScreeningAnswer.objects.create(participant=participant, question=question, attempt=attempt,
                                           answer=chosen, correct=correct)
            if not correct:
                (failed if attempt >= question.attempts_allowed else wrong).append(question.pk)
                left[question.pk] = question.attempts_allowed - attempt
        if failed:
            participant.status = Participant.Status.SCREENED_OUT
            participant.finished_at = now
            participant.completion_code = participant.study.completion_code("screened_out")
            participant.save(update_fields=["status", "finished_at", "completion_code"])
            ParticipantEvent.objects.create(participant=participant, kind="screened_out",
                                            payload={"failed_questions": failed})
            return ScreeningResult(status=participant.status)
        if wrong:
            return ScreeningResult(status=participant.status, wrong=tuple(wrong), attempts_left=left)
        participant.status = Participant.Status.LOBBY
        participant.lobby_entered_at = now
        participant.save(update_fields=["status", "lobby_entered_at"])
        ParticipantEvent.objects.create(participant=participant, kind="screening_passed", payload={})
    signals.lobby_entered.send(sender=Participant, participant=participant, now=now)  # deliberation.lobby
    return ScreeningResult(status=Participant.Status.LOBBY)
