"""Judge pages (public links) and the analyst report page (staff login required)."""
from __future__ import annotations

from django.urls import path

from . import views

app_name = "legibility"

urlpatterns = [
    path("s/<slug:slug>/", views.join, name="join"),
    path("j/<str:token>/", views.judge, name="judge"),
    path("j/<str:token>/answer/", views.answer, name="answer"),
    path("j/<str:token>/complete/", views.complete, name="complete"),
    path("report/<slug:slug>/", views.report, name="report"),
]
