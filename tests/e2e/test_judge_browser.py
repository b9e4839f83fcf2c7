"""End to end in real headless Chromium: one judge joins from a Prolific link, consents, judges three
solutions under a 3-second server-enforced limit (answering two, letting one run out), and reaches the
completion page; the database then holds exactly what happened."""
from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from legibility.models import JudgeItem, JudgeSession

from ..legibility.factories import make_study
from .browser import chromium, phone_pages
from .stack import ROOT, database_url, running_stack

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARTIFACTS = ROOT / "test-artifacts"


def test_one_judge_with_a_timeout_in_chromium(tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    study = make_study(slug="judge-e2e", seconds_per_item=3, items_per_session=3, gold_share=0,
                       prolific_redirect=True)
    ARTIFACTS.mkdir(exist_ok=True)
    with running_stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path, worker=False) as base, \
            chromium() as browser:
        page = phone_pages(browser, 1)[0]
        page.goto(f"{base}/legibility/s/judge-e2e/?PROLIFIC_PID=judge-1&STUDY_ID=S1&SESSION_ID=X1")
        assert "Your answers (true or false)" in page.inner_text("#consent-disclosure")
        assert not JudgeSession.objects.exists()  # the consent POST creates the judge, not opening the link
        page.check("#consent-box")
        page.click("#consent-submit")

        # Item 1: answer "True" at once.
        page.wait_for_selector("#answer-form", timeout=15_000)
        assert page.inner_text("#progress").strip() == "1 / 3"
        assert int(page.inner_text("#timer-seconds")) in (2, 3)
        assert "<<" not in page.inner_text("#solution-text")
        page.click("#answer-true")

        # Item 2: a reload keeps the server's timer; then let it run out. The page shows "time is up"
        # and moves on by itself (judge.js reloads once the server's deadline has passed).
        page.wait_for_function("document.querySelector('#progress') && "
                               "document.querySelector('#progress').textContent.trim() === '2 / 3'", timeout=15_000)
        page.screenshot(path=str(ARTIFACTS / "phone-judge-item.png"), full_page=True)  # this item times out anyway
        page.wait_for_timeout(1200)
        page.reload()
        page.wait_for_selector("#answer-form", timeout=15_000)
        assert page.inner_text("#progress").strip() == "2 / 3"
        assert int(page.inner_text("#timer-seconds")) <= 2  # resumed, not a fresh 3 s
        page.wait_for_function("document.querySelector('#progress') && "
                               "document.querySelector('#progress').textContent.trim() === '3 / 3'", timeout=15_000)

        # Item 3: answer "False".
        page.wait_for_selector("#answer-form", timeout=15_000)
        page.click("#answer-false")
        page.wait_for_selector("#completion-code", timeout=15_000)
        assert page.inner_text("#completion-code") == "LEGDONE"
        assert page.get_attribute("#prolific-link", "href") == \
            "https://app.prolific.com/submissions/complete?cc=LEGDONE"

    session = JudgeSession.objects.get(recruitment_id="judge-1")
    assert session.status == "completed" and session.recruitment_study_id == "S1"
    assert session.recruitment_session_id == "X1" and session.completion_code == "LEGDONE"
    items = list(JudgeItem.objects.filter(session=session).order_by("position"))
    assert [i.answer for i in items] == [True, None, False]
    assert [i.timed_out for i in items] == [False, True, False]
    for item in items:
        assert (item.deadline - item.started_at).total_seconds() == 3
    assert items[0].response_ms < 3000 and items[2].response_ms < 3000
    assert items[1].answered_at is None and items[1].response_ms is None
    # Item 3 started only after item 2's deadline had passed on the server.
    assert items[2].started_at >= items[1].deadline
