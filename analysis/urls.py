"""Analyst pages."""
from __future__ import annotations

from django.urls import path

from . import views

app_name = "analysis"

urlpatterns = [
    path("study/<slug:slug>/report/", views.study_report, name="study_report"),
]
