"""In headless Chromium: the monitor shows each group's arm, pauses the study (a member's phone shows "paused")
and resumes it. No worker, no model: groups are formed in the test, daphne serves the pages."""
from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection

from deliberation.models import Group, StudyArm

from ..factories import make_group, make_study
from .browser import chromium, phone_pages
from .stack import database_url, running_stack

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_monitor_shows_arms_and_pauses_and_resumes_the_study(tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop here
    study = make_study(slug="arms-e2e", title="Arms study", generation_seed=1)
    StudyArm.objects.create(study=study, name="control-arm", generation_backend="extractive")
    StudyArm.objects.create(study=study, name="treatment-arm", generation_backend="extractive", weight=1)
    (first, members), (second, _) = make_group(study, n=3), make_group(study, n=3)
    arms = {Group.objects.get(pk=g.pk).arm.name for g in (first, second)}
    assert arms == {"control-arm", "treatment-arm"}
    User.objects.create_superuser("exp", password="exp-pass-123")
    with running_stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path, worker=False) as base, \
            chromium() as browser:
        monitor = browser.new_page()
        monitor.goto(f"{base}/admin/login/?next=/monitor/study/{study.pk}/")
        monitor.fill("#id_username", "exp")
        monitor.fill("#id_password", "exp-pass-123")
        monitor.click("input[type=submit]")
        monitor.wait_for_selector("#groups tr td.arm")
        cells = {monitor.inner_text(f"#groups tr:nth-child({i}) td.arm").strip() for i in (1, 2)}
        assert cells == {"control-arm", "treatment-arm"}
        assert "control-arm: 1" in monitor.inner_text("#by-arm") and "treatment-arm: 1" in monitor.inner_text("#by-arm")

        monitor.click("#pause-button")
        monitor.wait_for_selector("#resume-button")
        assert "Paused since" in monitor.inner_text("#study-status")
        assert "paused (" in monitor.inner_text("#groups")
        phone = phone_pages(browser, 1)[0]
        phone.goto(f"{base}/p/{members[0].token}/")
        phone.wait_for_selector("#timer.paused", timeout=15_000)
        assert "Paused by the research team" in phone.inner_text("#timer")

        monitor.click("#resume-button")
        monitor.wait_for_selector("#pause-button")
        assert "Running" in monitor.inner_text("#study-status")
        phone.wait_for_function("!document.querySelector('#timer').classList.contains('paused')", timeout=15_000)
        assert "Time left" in phone.inner_text("#timer")
    assert Group.objects.filter(study=study, paused_seconds_left__isnull=True, deadline__isnull=False).count() == 2
