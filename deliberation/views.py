"""Participant pages of a deliberation study: join link, consent, the live study page, completion."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_http_methods

from core.errors import SubmissionError
from core.i18n import in_study_language, use_study_language
from participants.models import Participant
from participants.questionnaire import questionnaire_pending
from participants.services import (
    check_joinable,
    client_ip,
    current_consent,
    is_token,
    join_rate_allowed,
    participant_consent,
    participant_join,
    returning_participant,
)

from .models import Study
from .selectors import completion_url

COOKIE_MAX_AGE = 60 * 60 * 24 * 7
CONSENT_TICK = gettext_lazy("Please tick the box to give your consent, or close this page to leave.")


def _cookie_name(study: Study) -> str:
    return f"dlb_p_{study.pk}"


def consent_problem(post, consent) -> tuple[str, int] | None:
    """Why a consent form cannot be accepted (message, HTTP status), or None: the box must be ticked, and the form
    must carry the hash of the wording in force now (``consent``), else the person agreed to another text."""
    if post.get("consent") != "yes":
        return CONSENT_TICK, 200
    if post.get("consent_sha256") != consent.sha256:
        return gettext("The consent text has changed since this page was opened (it is now version %(version)s). "
                       "Please read it again and tick the box to agree to this version.") % {
            "version": consent.version}, 409
    return None


def _message(request: HttpRequest, title: str, message: str, status: int) -> HttpResponse:
    return render(request, "participants/message.html", {"title": title, "message": message}, status=status)


@dataclass(frozen=True)
class JoinFlow:
    """What differs between a deliberation study's join link and a legibility study's (``consent_join``)."""

    cookie_name: str
    template: str  # the consent page
    returning: Callable[..., Any]  # (params=, existing_token=) -> row | None; raises SubmissionError
    check: Callable[..., Any]  # (params=) -> raises SubmissionError when no newcomer is taken
    join: Callable[..., Any]  # (params=, user_agent=, existing_token=, consent=) -> the new, consented row
    page_url: Callable[[Any], str]  # the row's own page
    rate_scope: str  # rate-limit counters are kept apart per scope
    statuses: dict[str, int] = field(default_factory=dict)  # SubmissionError code -> HTTP status (else 503)


def consent_join(request: HttpRequest, study, flow: JoinFlow) -> HttpResponse:
    """The link experimenters share. A returning visitor (cookie, or the same PROLIFIC_PID and SESSION_ID) goes
    to their page; a PROLIFIC_PID in use elsewhere gets a clear 409 page. A newcomer sees the consent page and
    nothing is stored until they consent: the consent POST (to the same link, so its parameters are kept) creates
    the row, with the version and hash of the consent text they read. Everything it shows is in the study's
    language (the calling view is ``in_study_language``)."""
    use_study_language(request, study)
    params, token = request.GET.dict(), request.COOKIES.get(flow.cookie_name)
    statuses = {"recruitment_id_in_use": 409, "inactive": 409, **flow.statuses}
    try:
        found = flow.returning(params=params, existing_token=token)
        if found is not None:
            return _enter(request, flow, found)
        flow.check(params=params)
        consent = current_consent(study)
    except SubmissionError as exc:
        return _message(request, study.title, exc.message, statuses.get(exc.code, 503))
    context = {"study": study, "consent": consent}
    if request.method != "POST":
        return render(request, flow.template, context)
    if problem := consent_problem(request.POST, consent):
        return render(request, flow.template, {**context, "error": problem[0]}, status=problem[1])
    if settings.JOIN_RATE_LIMIT > 0:
        ip = client_ip(request.META, settings.TRUSTED_PROXY_COUNT)
        if not join_rate_allowed(ip, limit=settings.JOIN_RATE_LIMIT, window_seconds=settings.JOIN_RATE_WINDOW_SECONDS,
                                 scope=flow.rate_scope):
            response = _message(request, study.title, gettext(
                "Too many people have joined from your network in the last minute. Please wait a minute and "
                "open the link again; if you already started, your progress is kept."), 429)
            response["Retry-After"] = str(settings.JOIN_RATE_WINDOW_SECONDS)
            return response
    try:
        row = flow.join(params=params, user_agent=request.headers.get("User-Agent", ""), existing_token=token,
                        consent=consent)
    except SubmissionError as exc:
        return _message(request, study.title, exc.message, statuses.get(exc.code, 503))
    return _enter(request, flow, row)


def _enter(request: HttpRequest, flow: JoinFlow, row) -> HttpResponse:
    response = redirect(flow.page_url(row))
    response.set_cookie(flow.cookie_name, row.token, max_age=COOKIE_MAX_AGE, samesite="Lax", httponly=True,
                        secure=request.is_secure())
    return response


@require_http_methods(["GET", "POST"])
@in_study_language
def join(request: HttpRequest, slug: str) -> HttpResponse:
    """The link experimenters share, e.g. /s/SLUG/?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=..."""
    study = get_object_or_404(Study, slug=slug)
    return consent_join(request, study, JoinFlow(
        cookie_name=_cookie_name(study), template="participants/consent.html",
        returning=partial(returning_participant, study=study),
        check=partial(check_joinable, study=study),
        join=partial(participant_join, study=study),
        page_url=lambda participant: reverse("participant_page", kwargs={"token": participant.token}),
        rate_scope="participants", statuses={"bad_simulated_token": 403}))


def _participant_or_404(request: HttpRequest, token: str) -> Participant:
    """The participant, or 404; the rest of the (``in_study_language``) view speaks their study's language."""
    if not is_token(token):  # a guessed or mangled token (even one with a NUL byte) is simply not found
        raise Http404("No such participant.")
    participant = get_object_or_404(Participant.objects.select_related("study"), token=token)
    use_study_language(request, participant.study)
    return participant


@require_http_methods(["GET", "POST"])
@in_study_language
def participant_page(request: HttpRequest, token: str) -> HttpResponse:
    participant = _participant_or_404(request, token)
    if participant.status == Participant.Status.JOINED:  # a row from before the consent POST created the row
        consent = current_consent(participant.study)
        context = {"participant": participant, "study": participant.study, "consent": consent}
        if request.method != "POST":
            return render(request, "participants/consent.html", context)
        if problem := consent_problem(request.POST, consent):
            return render(request, "participants/consent.html", {**context, "error": problem[0]}, status=problem[1])
        participant_consent(participant=participant, consent=consent)
        return redirect("participant_page", token=token)
    if request.method == "POST":  # consent again (second tab, back button): nothing changes
        return redirect("participant_page", token=token)
    if participant.status == Participant.Status.SCREENING:
        return redirect("participant_screening", token=token)
    return render(request, "participants/study.html", {
        "participant": participant, "study": participant.study,
        "ws_path": f"/ws/p/{participant.token}/",
        "complete_url": reverse("participant_complete", kwargs={"token": token}),
        "withdraw_url": reverse("participant_withdraw", kwargs={"token": token}),
        "ws_max_bytes": settings.WEBSOCKET_MAX_MESSAGE_BYTES,  # the page refuses to send more than the server reads
    })


@in_study_language
def complete(request: HttpRequest, token: str) -> HttpResponse:
    participant = _participant_or_404(request, token)
    if not participant.is_finished:
        return redirect("participant_page", token=token)
    if questionnaire_pending(participant=participant):
        return redirect("participant_questionnaire", token=token)
    return render(request, "participants/complete.html", {
        "participant": participant, "study": participant.study, "completion_code": participant.completion_code,
        "redirect_url": completion_url(participant),
    })
