"""Judge pages (join link, consent, the timed item, completion) and the analyst's report page.

Plain HTTP: each item is one page with a True/False form (works without JavaScript); judge.js only
draws the countdown and reloads the page when the server's deadline has passed.
"""
from __future__ import annotations

from functools import partial

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods, require_POST

from core.i18n import in_study_language, use_study_language
from deliberation.services import SubmissionError
from deliberation.views import JoinFlow, consent_join, consent_problem
from participants.services import current_consent, find_returning, is_token

from . import services
from .grading import strip_calculator
from .models import JudgeSession, LegibilityStudy


def _judge_session(request: HttpRequest, token: str) -> JudgeSession:
    """The judge's session, or 404; a mangled token (a NUL byte, say) never reaches the query. The rest of the
    (``in_study_language``) view speaks the study's language."""
    if not is_token(token):
        raise Http404("No such judge session.")
    session = get_object_or_404(JudgeSession.objects.select_related("study"), token=token)
    use_study_language(request, session.study)
    return session


def _cookie_name(study: LegibilityStudy) -> str:
    return f"leg_j_{study.pk}"


def _message(request: HttpRequest, title: str, message: str, status: int) -> HttpResponse:
    return render(request, "participants/message.html", {"title": title, "message": message}, status=status)


@require_http_methods(["GET", "POST"])
@in_study_language
def join(request: HttpRequest, slug: str) -> HttpResponse:
    """The link experimenters share, e.g. /legibility/s/SLUG/?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=...
    Same rules as a deliberation study's link (``deliberation.views.consent_join``): the judge's row is created by
    the consent POST, resumed with the cookie or the same PROLIFIC_PID and SESSION_ID, and new joins are
    rate-limited per client address."""
    study = get_object_or_404(LegibilityStudy, slug=slug)
    return consent_join(request, study, JoinFlow(
        cookie_name=_cookie_name(study), template="legibility/consent.html",
        returning=partial(find_returning, JudgeSession, study=study),
        check=lambda params: services.check_joinable(study=study),
        join=partial(services.session_join, study=study),
        page_url=lambda session: reverse("legibility:judge", kwargs={"token": session.token}),
        rate_scope="legibility"))


@require_http_methods(["GET", "POST"])
@in_study_language
def judge(request: HttpRequest, token: str) -> HttpResponse:
    session = _judge_session(request, token)
    study = session.study
    if session.status == JudgeSession.Status.JOINED:  # a row from before the consent POST created the row
        consent = current_consent(study)
        context = {"session": session, "study": study, "consent": consent}
        if request.method != "POST":
            return render(request, "legibility/consent.html", context)
        if problem := consent_problem(request.POST, consent):
            return render(request, "legibility/consent.html", {**context, "error": problem[0]}, status=problem[1])
        try:
            services.session_consent(session=session, consent=consent)
        except SubmissionError as exc:
            return _message(request, study.title, exc.message, 503)
        return redirect("legibility:judge", token=token)
    if request.method == "POST":  # consent again (second tab, back button): nothing changes
        return redirect("legibility:judge", token=token)
    item = services.session_current_item(session=session)
    if item is None:
        return redirect("legibility:complete", token=token)
    remaining_ms = max(0, round((item.deadline - services.clock()).total_seconds() * 1000))
    response = render(request, "legibility/item.html", {
        "session": session, "study": study, "item": item, "problem": item.solution.problem,
        "solution_text": strip_calculator(item.solution.text), "remaining_ms": remaining_ms,
        "number": item.position + 1, "total": session.items.count(),
        "answer_url": reverse("legibility:answer", kwargs={"token": token}),
    })
    response["Cache-Control"] = "no-store"  # the back button must not show a stale timer
    return response


@require_POST
@in_study_language
def answer(request: HttpRequest, token: str) -> HttpResponse:
    session = _judge_session(request, token)
    value = request.POST.get("answer")
    try:
        item_id = int(request.POST.get("item", ""))
    except ValueError:
        item_id = None
    if value not in ("true", "false") or item_id is None:
        return _message(request, session.study.title,
                        gettext("That answer could not be read; please use the buttons."), 400)
    try:
        services.item_answer(session=session, item_id=item_id, answer=value == "true")
    except SubmissionError as exc:
        return _message(request, session.study.title, exc.message, 404 if exc.code == "not_found" else 409)
    return redirect("legibility:judge", token=token)


@in_study_language
def complete(request: HttpRequest, token: str) -> HttpResponse:
    session = _judge_session(request, token)
    if session.status != JudgeSession.Status.COMPLETED:
        return redirect("legibility:judge", token=token)
    return render(request, "legibility/complete.html", {
        "session": session, "study": session.study, "completion_code": session.completion_code,
        "redirect_url": services.completion_url(session)})


@staff_member_required
def report(request: HttpRequest, slug: str) -> HttpResponse:
    """The analyst's page for one study: every report figure (login required: staff)."""
    from .reports import plotly_js, study_report_fragment

    study = get_object_or_404(LegibilityStudy, slug=slug)
    return render(request, "legibility/report.html", {"study": study, "report": study_report_fragment(study),
                                                      "plotly_js": plotly_js()})
