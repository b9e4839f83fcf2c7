from django.contrib import admin
from django.shortcuts import render
from django.urls import include, path

from config.health import healthz
from core.i18n import javascript_catalog
from deliberation import monitor
from deliberation import views as participant_views

urlpatterns = [
    path("", lambda request: render(request, "home.html"), name="home"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("jsi18n/<str:language>/", javascript_catalog, name="javascript_catalog"),  # participant and judge pages
    path("legibility/", include("legibility.urls")),
    path("analysis/", include("analysis.urls")),
    path("s/<slug:slug>/", participant_views.join, name="join"),
    path("p/<str:token>/", participant_views.participant_page, name="participant_page"),
    path("p/<str:token>/complete/", participant_views.complete, name="participant_complete"),
    path("", include("participants.urls")),  # screening, questionnaire, withdrawal
    path("monitor/", monitor.index, name="monitor"),
    path("monitor/study/<int:study_id>/", monitor.study_monitor, name="monitor_study"),
    path("monitor/study/<int:study_id>/state.json", monitor.study_state, name="monitor_study_state"),
    path("monitor/group/<int:group_id>/advance/", monitor.group_advance, name="monitor_group_advance"),
    path("monitor/study/<int:study_id>/pause/", monitor.study_pause_view, name="monitor_study_pause"),
    path("monitor/study/<int:study_id>/resume/", monitor.study_resume_view, name="monitor_study_resume"),
]
