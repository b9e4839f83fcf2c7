"""Judge writes: join from a link, consent (builds the queue), the server-timed current item, answers.

The server is the only clock that counts: an item's ``started_at`` and ``deadline`` are stored the
first time it is shown, a reload shows the same item with the time that is left, and an answer that
arrives after the deadline is recorded as a timeout. Every write holds the session's row lock, so two
tabs or a double click cannot answer twice or start two timers.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median

from django.db import transaction
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy

from deliberation.selectors import PROLIFIC_COMPLETE_URL
from deliberation.services import SubmissionError, derive_seed
from participants.services import current_consent, join_or_resume

from .judging import Candidate, build_queue, judge_flagged, judge_outcome
from .models import JudgeItem, JudgeSession, LegibilityStudy, Problem, Solution

# The one clock of this module; tests replace it to move time without sleeping.
clock = timezone.now


def _now(now: datetime | None) -> datetime:
    return now or clock()


def check_joinable(*, study: LegibilityStudy) -> None:
    """Raise ``SubmissionError`` when ``study`` takes no new judge."""
    if not study.is_active:
        raise SubmissionError("inactive", gettext_lazy("This study is not accepting participants."))
    if not judge_pool(study).exists():
        raise SubmissionError("no_solutions", gettext_lazy(
            "This study is not ready yet (it has no solutions to judge)."))


def session_join(*, study: LegibilityStudy, params: dict[str, str], user_agent: str = "",
                 existing_token: str | None = None, consent=None, now: datetime | None = None) -> JudgeSession:
    """A new judge, or the one this visitor may resume (``participants.services.find_returning``: the cookie, or
    the same PROLIFIC_PID and SESSION_ID). With ``consent`` (the ``JudgeConsentVersion`` agreed to: the join
    view passes it on the consent POST) a new judge is created consented, queue built, in one transaction."""
    check_joinable(study=study)
    with transaction.atomic():
        session, _ = join_or_resume(JudgeSession, study=study, params=params, user_agent=user_agent,
                                    existing_token=existing_token)
        if consent is not None:
            session = session_consent(session=session, consent=consent, now=now)
    return session


def judge_pool(study: LegibilityStudy):
    """Solutions judges see: every round's solutions on held-out problems (never trained on)."""
    return Solution.objects.filter(problem__study=study, problem__half=Problem.Half.HELDOUT)


def session_consent(*, session: JudgeSession, consent=None, now: datetime | None = None) -> JudgeSession:
    """Consent and build the judge's balanced queue, once (a second consent changes nothing). ``consent``: the
    ``JudgeConsentVersion`` agreed to, by default the study's current one."""
    now = _now(now)
    with transaction.atomic():
        session = JudgeSession.objects.select_for_update().select_related("study").get(pk=session.pk)
        if session.status != JudgeSession.Status.JOINED:
            return session
        study = session.study
        candidates = [
            Candidate(solution_id=pk, problem_id=problem_id, correct=correct, stratum=(source, role, round_),
                      is_gold=is_gold)
            for pk, problem_id, correct, source, role, round_, is_gold in judge_pool(study).values_list(
                "pk", "problem_id", "correct", "source", "role", "round", "is_gold")
        ]
        try:
            queue = build_queue(candidates, n_items=study.items_per_session, gold_share=study.gold_share,
                                seed=derive_seed(study.seed, "judge", session.pk))
        except ValueError as exc:
            raise SubmissionError("no_solutions", format_lazy(
                gettext_lazy("This study is not ready yet ({reason})."), reason=exc)) from exc
        JudgeItem.objects.bulk_create([
            JudgeItem(session=session, solution_id=item.solution_id, position=i, is_gold=item.is_gold)
            for i, item in enumerate(queue)
        ])
        consent = consent or current_consent(study)
        session.status = JudgeSession.Status.JUDGING
        session.consented_at = now
        session.consent_version, session.consent_sha256 = consent.version, consent.sha256
        session.save(update_fields=["status", "consented_at", "consent_version", "consent_sha256"])
    return session


def _expire(session: JudgeSession, now: datetime) -> None:
    session.items.filter(deadline__lt=now, answer__isnull=True, timed_out=False).update(timed_out=True)


def _finish(session: JudgeSession, now: datetime) -> None:
    stats = session_stats(session)
    session.outcome = judge_outcome(n_items=stats.n_items, n_timed_out=stats.n_timed_out, flagged=stats.flagged,
                                    max_timeout_share=session.study.max_timeout_share)
    session.status = JudgeSession.Status.COMPLETED
    session.completion_code = session.study.completion_code(session.outcome)
    session.finished_at = now
    session.save(update_fields=["status", "outcome", "completion_code", "finished_at"])


def session_current_item(*, session: JudgeSession, now: datetime | None = None) -> JudgeItem | None:
    """The item to show now, its timer started on first sight; None once the queue is done.

    Items whose deadline passed are marked timed out first, so a judge who closes the tab and
    comes back later finds those items counted as timeouts, not a fresh timer.
    """
    now = _now(now)
    with transaction.atomic():
        session = JudgeSession.objects.select_for_update().select_related("study").get(pk=session.pk)
        if session.status != JudgeSession.Status.JUDGING:
            return None
        _expire(session, now)
        item = (session.items.filter(answer__isnull=True, timed_out=False).select_related("solution__problem")
                .order_by("position").first())
        if item is None:
            _finish(session, now)
            return None
        if item.started_at is None:
            item.started_at = now
            item.deadline = now + timedelta(seconds=session.study.seconds_per_item)
            item.save(update_fields=["started_at", "deadline"])
        return item


@dataclass(frozen=True)
class AnswerResult:
    item: JudgeItem
    created: bool  # False: the item was already answered or timed out; nothing changed


def item_answer(*, session: JudgeSession, item_id: int, answer: bool, now: datetime | None = None) -> AnswerResult:
    """Record a True/False answer for the judge's running item. Late answers become timeouts.

    Only the judge's own items exist here (another judge's item id is "not found"), and only
    an item that has been shown can be answered.
    """
    now = _now(now)
    with transaction.atomic():
        session = JudgeSession.objects.select_for_update().get(pk=session.pk)
        item = JudgeItem.objects.filter(session=session, pk=item_id).first()
        if item is None:
            raise SubmissionError("not_found", gettext_lazy("This item is not in your session."))
        if item.is_done:
            return AnswerResult(item, False)
        if item.started_at is None or item.deadline is None:
            raise SubmissionError("not_started", gettext_lazy("This item has not been shown yet."))
        if now > item.deadline:
            item.timed_out = True
            item.save(update_fields=["timed_out"])
            return AnswerResult(item, True)
        item.answer = answer
        item.answered_at = now
        item.response_ms = round((now - item.started_at).total_seconds() * 1000)
        item.save(update_fields=["answer", "answered_at", "response_ms"])
        return AnswerResult(item, True)


# --- reads ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SessionStats:
    n_items: int
    n_answered: int
    n_right: int
    n_timed_out: int
    gold_answered: int
    gold_right: int
    median_response_ms: float | None
    flagged: bool

    @property
    def accuracy(self) -> float | None:
        return self.n_right / self.n_answered if self.n_answered else None

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_right / self.gold_answered if self.gold_answered else None


def session_stats(session: JudgeSession) -> SessionStats:
    """Accuracy overall and on gold items, timeouts, and whether the judge is at chance level."""
    rows = list(session.items.values_list("answer", "timed_out", "is_gold", "solution__correct", "response_ms"))
    answered = [r for r in rows if r[0] is not None]
    right = [r for r in answered if r[0] == r[3]]
    gold = [r for r in answered if r[2]]
    gold_right = [r for r in gold if r[0] == r[3]]
    times = [r[4] for r in answered if r[4] is not None]
    flagged = judge_flagged(n_right=len(right), n_answered=len(answered), gold_right=len(gold_right),
                            gold_answered=len(gold), alpha=session.study.chance_alpha)
    return SessionStats(n_items=len(rows), n_answered=len(answered), n_right=len(right),
                        n_timed_out=sum(1 for r in rows if r[1]), gold_answered=len(gold),
                        gold_right=len(gold_right), median_response_ms=median(times) if times else None,
                        flagged=flagged)


def completion_url(session: JudgeSession) -> str | None:
    if session.study.prolific_redirect and session.completion_code:
        return PROLIFIC_COMPLETE_URL.format(code=session.completion_code)
    return None
