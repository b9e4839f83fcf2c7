"""End to end in real headless Chromium: three participants join one study, form a group, write
opinions, rate and rank the statements SmolLM2 writes in a real Celery worker, critique, rate the
revision and reach the completion page."""
from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from deliberation.models import Candidate, Critique, Group, Opinion, Rating
from participants.models import Participant

from ..factories import make_study
from .browser import (
    OPINIONS,
    PHASE_TIMEOUT_MS,
    chromium,
    critique,
    finish,
    join_and_consent,
    phone_pages,
    rate_everything,
)
from .stack import ROOT, database_url, running_stack

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.django_db(transaction=True)]
ARTIFACTS = ROOT / "test-artifacts"


def test_three_participants_complete_a_deliberation_in_chromium(tmp_path, monkeypatch):
    # Playwright's sync API runs an event loop in this thread; Django would refuse our ORM checks.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    study = make_study(slug="e2e", title="E2E study", generation_backend="embedded", num_candidates=2,
                       generation_params={"max_new_tokens": 48, "temperature": 0.7},
                       max_group_size=3, min_group_size=3, prolific_redirect=True,
                       opinion_seconds=600, rating_seconds=600, critique_seconds=600, final_rating_seconds=600)
    ARTIFACTS.mkdir(exist_ok=True)
    with running_stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path) as base, \
            chromium() as browser:
        pages = phone_pages(browser, 3)
        join_and_consent(pages, base, "e2e", prefix="e2e")
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
        critique(pages)
        for page in pages:
            rate_everything(page, agreement=6, quality=5)
        pages[2].wait_for_selector("#done", timeout=PHASE_TIMEOUT_MS)
        pages[2].screenshot(path=str(ARTIFACTS / "phone-done.png"), full_page=True)
        assert finish(pages) == ["DONE123"] * 3
        for page in pages:
            href = page.get_attribute("#prolific-link", "href")
            assert href == "https://app.prolific.com/submissions/complete?cc=DONE123"

    group = Group.objects.get(study=study)
    assert group.phase == "done" and group.outcome == "completed"
    assert Opinion.objects.filter(group=group, by_timeout=False).count() == 3
    assert Candidate.objects.filter(group=group, round=1).count() == 2
    assert Candidate.objects.filter(group=group, round=2).count() == 2
    assert Candidate.objects.filter(group=group, backend="embedded", model_id__icontains="SmolLM2").count() == 4
    ratings = Rating.objects.filter(group=group)
    assert ratings.count() == 3 * 2 * 2 and not ratings.filter(rank__isnull=True).exists()
    assert Critique.objects.filter(group=group).count() == 3
    assert set(Participant.objects.filter(study=study).values_list("status", flat=True)) == {"completed"}
    p = Participant.objects.get(recruitment_id="e2e-0")
    assert p.recruitment_study_id == "S1" and p.recruitment_session_id == "X0"
