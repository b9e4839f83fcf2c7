"""Participant pages of a deliberation study: join link, consent, the live study page, completion."""
from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from core.errors import SubmissionError
from participants.models import Participant
from participants.services import (
    client_ip,
    is_token,
    join_rate_allowed,
    participant_consent,
    participant_join,
    returning_participant,
)

from .models import Study
from .selectors import completion_url

COOKIE_MAX_AGE = 60 * 60 * 24 * 7


def _cookie_name(study: Study) -> str:
    return f"dlb_p_{study.pk}"


def join(request: HttpRequest, slug: str) -> HttpResponse:
    """The link experimenters share, e.g. /s/SLUG/?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=..."""
    study = get_object_or_404(Study, slug=slug)
    params, token = request.GET.dict(), request.COOKIES.get(_cookie_name(study))
    if settings.JOIN_RATE_LIMIT > 0 and study.is_active and \
            returning_participant(study=study, params=params, existing_token=token) is None:
        ip = client_ip(request.META, settings.TRUSTED_PROXY_COUNT)
        if not join_rate_allowed(ip, limit=settings.JOIN_RATE_LIMIT, window_seconds=settings.JOIN_RATE_WINDOW_SECONDS):
            response = render(request, "participants/message.html", {
                "title": study.title,
                "message": "Too many people have joined from your network in the last minute. Please wait a "
                           "minute and open the link again; if you already started, your progress is kept."},
                status=429)
            response["Retry-After"] = str(settings.JOIN_RATE_WINDOW_SECONDS)
            return response
    try:
        participant = participant_join(
            study=study, params=params, user_agent=request.headers.get("User-Agent", ""), existing_token=token,
        )
    except SubmissionError as exc:
        return render(request, "participants/message.html", {"title": study.title, "message": exc.message},
                      status={"inactive": 409, "bad_simulated_token": 403}.get(exc.code, 503))
    response = redirect("participant_page", token=participant.token)
    response.set_cookie(_cookie_name(study), participant.token, max_age=COOKIE_MAX_AGE, samesite="Lax",
                        httponly=True, secure=request.is_secure())
    return response


def _participant_or_404(token: str) -> Participant:
    if not is_token(token):  # a guessed or mangled token (even one with a NUL byte) is simply not found
        raise Http404("No such participant.")
    return get_object_or_404(Participant.objects.select_related("study"), token=token)


@require_http_methods(["GET", "POST"])
def participant_page(request: HttpRequest, token: str) -> HttpResponse:
    participant = _participant_or_404(token)
    if request.method == "POST":
        if request.POST.get("consent") == "yes":
            participant_consent(participant=participant)
            return redirect("participant_page", token=token)
        return render(request, "participants/consent.html",
                      {"participant": participant, "study": participant.study,
                       "error": "Please tick the box to give your consent, or close this page to leave."})
    if participant.status == Participant.Status.JOINED:
        return render(request, "participants/consent.html", {"participant": participant, "study": participant.study})
    return render(request, "participants/study.html", {
        "participant": participant, "study": participant.study,
        "ws_path": f"/ws/p/{participant.token}/",
        "complete_url": reverse("participant_complete", kwargs={"token": token}),
    })


def complete(request: HttpRequest, token: str) -> HttpResponse:
    participant = _participant_or_404(token)
    if not participant.is_finished:
        return redirect("participant_page", token=token)
    return render(request, "participants/complete.html", {
        "participant": participant, "study": participant.study, "completion_code": participant.completion_code,
        "redirect_url": completion_url(participant),
    })
