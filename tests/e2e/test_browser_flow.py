"""End to end in real headless Chromium: three participants join one study, form a group, write
opinions, rate and rank the statements SmolLM2 writes in a real Celery worker, critique, rate the
revision and reach the completion page."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from deliberation.models import Candidate, Critique, Group, Opinion, Rating
from participants.models import Participant

from ..factories import make_study
from .stack import ROOT, database_url, running_stack

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.django_db(transaction=True)]
ARTIFACTS = ROOT / "test-artifacts"
OPINIONS = [
    "Removing food taxes helps poor families the most, because they spend more of their income on food.",
    "Schools and hospitals need that revenue; removing the tax would only help supermarkets, not families.",
    "Remove the tax on basic groceries like bread and vegetables, but keep it on sweets and fast food.",
]
PHASE_TIMEOUT_MS = 240_000  # generation on a 2-core CPU, model load included


def chromium():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "Debian chromium is required (scripts/setup --dev installs it)"
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=executable, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
    return pw, browser


def rate_everything(page, agreement: int, quality: int) -> None:
    page.wait_for_selector("#rating-form", timeout=PHASE_TIMEOUT_MS)
    for card in page.query_selector_all(".candidate"):
        cid = card.get_attribute("data-candidate")
        page.check(f"input[name='agree-{cid}'][value='{agreement}']")
        page.check(f"input[name='quality-{cid}'][value='{quality}']")
    page.click("#ratings-submit")
    page.wait_for_selector("#waiting, #critique-form, #done, #generating", timeout=30_000)


def test_three_participants_complete_a_deliberation_in_chromium(tmp_path, monkeypatch):
    # Playwright's sync API runs an event loop in this thread; Django would refuse our ORM checks.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    study = make_study(slug="e2e", title="E2E study", generation_backend="embedded", num_candidates=2,
                       generation_params={"max_new_tokens": 48, "temperature": 0.7},
                       max_group_size=3, min_group_size=3, prolific_redirect=True,
                       opinion_seconds=600, rating_seconds=600, critique_seconds=600, final_rating_seconds=600)
    ARTIFACTS.mkdir(exist_ok=True)
    with running_stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path) as base:
        pw, browser = chromium()
        try:
            contexts = [browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
                        for _ in range(3)]
            pages = [ctx.new_page() for ctx in contexts]
            for i, page in enumerate(pages):
                page.goto(f"{base}/s/e2e/?PROLIFIC_PID=e2e-{i}&STUDY_ID=S1&SESSION_ID=X{i}")
                page.check("#consent-box")
                page.click("#consent-submit")
            for page in pages:
                page.wait_for_selector("#opinion-form", timeout=60_000)
            assert Participant.objects.filter(study=study, status="in_group").count() == 3
            pages[0].screenshot(path=str(ARTIFACTS / "phone-opinion.png"), full_page=True)

            # Over-long text: a clear message, and the typed text is kept.
            pages[0].fill("#opinion-text", "x" * 1200)
            pages[0].click("#opinion-submit")
            assert "limit is 1000" in pages[0].inner_text("#error")
            assert len(pages[0].input_value("#opinion-text")) == 1200

            for page, text in zip(pages, OPINIONS):
                page.fill("#opinion-text", text)
                page.click("#opinion-submit")
            # A reload in the middle resumes exactly where the participant was.
            pages[1].reload()
            pages[1].wait_for_selector("#waiting, #generating, #rating-form", timeout=30_000)

            for i, page in enumerate(pages):
                page.wait_for_selector("#rating-form", timeout=PHASE_TIMEOUT_MS)
                if i == 0:
                    page.screenshot(path=str(ARTIFACTS / "phone-rating.png"), full_page=True)
                rate_everything(page, agreement=5 + (i % 2), quality=4)

            for page in pages:
                page.wait_for_selector("#critique-form", timeout=60_000)
                assert page.inner_text("#winner-statement").strip()
                page.fill("#critique-text", "Please say more clearly that basic food should be tax free.")
                page.click("#critique-submit")

            for page in pages:
                rate_everything(page, agreement=6, quality=5)

            for page in pages:
                page.wait_for_selector("#done", timeout=60_000)
                assert page.inner_text("#final-statement").strip()
            pages[2].screenshot(path=str(ARTIFACTS / "phone-done.png"), full_page=True)
            for page in pages:
                page.click("#finish-link")
                page.wait_for_selector("#completion-code", timeout=30_000)
                assert page.inner_text("#completion-code") == "DONE123"
                href = page.get_attribute("#prolific-link", "href")
                assert href == "https://app.prolific.com/submissions/complete?cc=DONE123"
        finally:
            browser.close()
            pw.stop()

    group = Group.objects.get(study=study)
    assert group.phase == "done" and group.outcome == "completed"
    assert Opinion.objects.filter(group=group, by_timeout=False).count() == 3
    assert Candidate.objects.filter(group=group, round=1).count() == 2
    assert Candidate.objects.filter(group=group, round=2).count() == 2
    assert Candidate.objects.filter(group=group, backend="embedded", model_id__icontains="SmolLM2").count() == 4
    assert Rating.objects.filter(group=group).count() == 3 * 2 * 2
    assert Critique.objects.filter(group=group).count() == 3
    assert set(Participant.objects.filter(study=study).values_list("status", flat=True)) == {"completed"}
    p = Participant.objects.get(recruitment_id="e2e-0")
    assert p.recruitment_study_id == "S1" and p.recruitment_session_id == "X0"
