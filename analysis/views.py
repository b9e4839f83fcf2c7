"""The analyst's report page: every figure of one study (staff or members of the 'analyst' group)."""
from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone

from deliberation.models import Study

from .reports.build import build_report
from .reports.data import load_group_texts, load_offline_loo, load_questionnaire, load_study
from .reports.render import questionnaire_table, render_fragment, render_standalone

ANALYST_GROUP = "analyst"


def is_analyst(user) -> bool:
    return user.is_active and (user.is_staff or user.groups.filter(name=ANALYST_GROUP).exists())


def analyst_required(view):
    """Anonymous visitors go to the admin login; signed-in users who are not analysts get 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not is_analyst(request.user):
            raise PermissionDenied("Analyst reports are for staff and members of the 'analyst' group.")
        return view(request, *args, **kwargs)

    return wrapper


def study_report_data(study: Study, *, representation: bool, dissent_at_most: int = 3):
    """The report of one study; minority representation only on request (it loads the embedding model)."""
    frame, note = None, None
    if representation:
        from .representation import representation_frame

        try:
            frame = representation_frame(load_group_texts(study))
        except (RuntimeError, OSError) as exc:  # the embedding model is not installed or unreadable
            note = f"Could not embed the texts: {exc}"[:300]
    offline, offline_note = load_offline_loo(study)
    report = build_report(load_study(study), representation=frame, representation_note=note, offline_loo=offline,
                          offline_loo_note=offline_note, seed=study.pk, dissent_at_most=dissent_at_most)
    report.questionnaire = load_questionnaire(study)
    return report


@analyst_required
def study_report(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_object_or_404(Study, slug=slug)
    representation = request.GET.get("representation") == "1"
    try:  # leave-one-out dissent threshold (?dissent=3): agreement at or below it counts as dissent
        dissent = min(7, max(1, int(request.GET.get("dissent", 3))))
    except ValueError:
        dissent = 3
    report = study_report_data(study, representation=representation, dissent_at_most=dissent)
    if request.GET.get("format") == "html":
        response = HttpResponse(render_standalone(report, generated=timezone.now().isoformat(timespec="seconds")),
                                content_type="text/html; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="report-{study.slug}.html"'
        return response
    return render(request, "analysis/report.html", {
        "study": study, "report": report, "figures_html": render_fragment(report.figures),
        "questionnaire_html": questionnaire_table(report), "representation": representation})
