"""Participant pages: join link, consent, the live study page, completion."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from deliberation.models import Study
from deliberation.selectors import completion_url
from deliberation.services import SubmissionError

from .models import Participant
from .services import participant_consent, participant_join

COOKIE_MAX_AGE = 60 * 60 * 24 * 7


def _cookie_name(study: Study) -> str:
    return f"dlb_p_{study.pk}"


def join(request: HttpRequest, slug: str) -> HttpResponse:
    """The link experimenters share, e.g. /s/SLUG/?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=..."""
    study = get_object_or_404(Study, slug=slug)
    try:
        participant = participant_join(
            study=study, params=request.GET.dict(), user_agent=request.headers.get("User-Agent", ""),
            existing_token=request.COOKIES.get(_cookie_name(study)),
        )
    except SubmissionError as exc:
        return render(request, "participants/message.html", {"title": study.title, "message": exc.message},
                      status=409 if exc.code == "inactive" else 503)
    response = redirect("participant_page", token=participant.token)
    response.set_cookie(_cookie_name(study), participant.token, max_age=COOKIE_MAX_AGE, samesite="Lax",
                        httponly=True, secure=request.is_secure())
    return response


@require_http_methods(["GET", "POST"])
def participant_page(request: HttpRequest, token: str) -> HttpResponse:
    participant = get_object_or_404(Participant.objects.select_related("study"), token=token)
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
    participant = get_object_or_404(Participant.objects.select_related("study"), token=token)
    if not participant.is_finished:
        return redirect("participant_page", token=token)
    return render(request, "participants/complete.html", {
        "participant": participant, "study": participant.study, "redirect_url": completion_url(participant),
    })
