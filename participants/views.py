"""Participant pages around the live study page: screening (before the lobby), the questionnaire (after the
final rating) and withdrawal. Each reads and writes through ``participants.screening`` / ``questionnaire`` /
``withdrawal``; bad input re-renders the page with a clear message and every answer kept."""
from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods

from core.errors import SubmissionError
from core.i18n import in_study_language, use_study_language

from .forms import QuestionnaireForm, ScreeningForm
from .models import Participant
from .questionnaire import questionnaire_items, questionnaire_pending, questionnaire_submit
from .screening import screening_open, screening_submit
from .services import is_token
from .withdrawal import participant_withdraw


def _participant(request: HttpRequest, token: str) -> Participant:
    """The participant, or 404; the rest of the (``in_study_language``) view speaks their study's language."""
    if not is_token(token):
        raise Http404("No such participant.")
    participant = get_object_or_404(Participant.objects.select_related("study"), token=token)
    use_study_language(request, participant.study)
    return participant


@require_http_methods(["GET", "POST"])
@in_study_language
def screening(request: HttpRequest, token: str) -> HttpResponse:
    participant = _participant(request, token)
    if participant.status != Participant.Status.SCREENING:
        return redirect("participant_page", token=token)
    questions = screening_open(participant=participant)
    context = {"participant": participant, "study": participant.study}
    if request.method != "POST":
        return render(request, "participants/screening.html", {**context, "form": ScreeningForm(questions=questions)})
    form = ScreeningForm(request.POST, questions=questions)
    if not form.is_valid():
        return render(request, "participants/screening.html", {**context, "form": form}, status=400)
    try:
        result = screening_submit(participant=participant, answers=form.answers())
    except SubmissionError as exc:
        form.add_error(None, exc.message)
        return render(request, "participants/screening.html", {**context, "form": form}, status=400)
    if result.status == Participant.Status.SCREENING:
        retry = ScreeningForm(questions=screening_open(participant=participant))
        return render(request, "participants/screening.html", {**context, "form": retry, "retry": len(result.wrong)})
    if result.status == Participant.Status.SCREENED_OUT:
        return redirect("participant_complete", token=token)
    return redirect("participant_page", token=token)


@require_http_methods(["GET", "POST"])
@in_study_language
def questionnaire(request: HttpRequest, token: str) -> HttpResponse:
    participant = _participant(request, token)
    if not questionnaire_pending(participant=participant):
        return redirect("participant_complete", token=token)
    items = questionnaire_items(study_id=participant.study_id)
    context = {"participant": participant, "study": participant.study}
    if request.method != "POST":
        return render(request, "participants/questionnaire.html", {**context, "form": QuestionnaireForm(items=items)})
    form = QuestionnaireForm(request.POST, items=items)
    if not form.is_valid():
        return render(request, "participants/questionnaire.html", {**context, "form": form}, status=400)
    try:
        questionnaire_submit(participant=participant, values=form.values())
    except SubmissionError as exc:
        form.add_error(None, exc.message)
        return render(request, "participants/questionnaire.html", {**context, "form": form}, status=400)
    return redirect("participant_complete", token=token)


@require_http_methods(["GET", "POST"])
@in_study_language
def withdraw(request: HttpRequest, token: str) -> HttpResponse:
    participant = _participant(request, token)
    context = {"participant": participant, "study": participant.study}
    if participant.status == Participant.Status.WITHDRAWN:
        return redirect("participant_complete", token=token)
    if request.method != "POST":
        return render(request, "participants/withdraw.html", context)
    if request.POST.get("confirm") != "yes":
        return render(request, "participants/withdraw.html",
                      {**context, "error": gettext("Please tick the box to confirm that you want to withdraw.")},
                      status=400)
    participant_withdraw(participant=participant)
    return redirect("participant_complete", token=token)
