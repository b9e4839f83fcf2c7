"""Issue 18 in real headless Chromium on a phone-sized window, against daphne: screening (fail and pass), the lobby
alert in a background tab (title flash with the time left, the tone through the Web Audio API), withdrawal with
its confirm step while the group carries on, and the questionnaire with a malformed answer."""
from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from deliberation.models import GroupEvent
from participants.models import Participant, QuestionnaireAnswer, QuestionnaireItem, ScreeningQuestion

from ..factories import make_study
from .browser import OPINIONS, chromium, phone_pages
from .stack import database_url, running_stack

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Lets the test put a page in the background (document.hidden, as in a second tab) and count the tones the
# page's own code plays: the page is not changed, only the browser API under it is observed.
BACKGROUND_HOOK = """
Object.defineProperty(Document.prototype, "hidden", {configurable: true, get() { return !!window.__background; }});
window.__tones = 0;
const makeOscillator = AudioContext.prototype.createOscillator;
AudioContext.prototype.createOscillator = function () { window.__tones += 1; return makeOscillator.call(this); };
"""


def consent(page, base, slug, pid):
    page.goto(f"{base}/s/{slug}/?PROLIFIC_PID={pid}&STUDY_ID=S1&SESSION_ID=X")
    page.check("#consent-box")
    page.click("#consent-submit")


def screen(page, answer: str) -> None:
    page.wait_for_selector("#screening")
    page.check(f"input[value='{answer}']")
    page.click("#screening-submit")


def test_screening_lobby_alert_and_withdrawal(tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    study = make_study(slug="steps", title="Steps study", min_group_size=2, max_group_size=2,
                       completion_code_screened_out="SCREENX", opinion_seconds=600)
    ScreeningQuestion.objects.create(study=study, text="Groups write a shared statement. Who writes it?",
                                     options=["Only me", "An AI mediator, from all our opinions"],
                                     correct_option="An AI mediator, from all our opinions")
    with running_stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path, worker=False) as base, \
            chromium() as browser:
        failing, waiting, joining = phone_pages(browser, 3)
        # Screening failed: the screened-out code, never the lobby.
        consent(failing, base, "steps", "fail")
        screen(failing, "Only me")
        failing.wait_for_selector("#completion-code")
        assert failing.inner_text("#completion-code") == "SCREENX"
        assert "cannot take part" in failing.inner_text("#completion")

        # Screening passed: the lobby, with the alert choices; then the tab goes to the background.
        waiting.add_init_script(BACKGROUND_HOOK)
        consent(waiting, base, "steps", "wait")
        screen(waiting, "An AI mediator, from all our opinions")
        waiting.wait_for_selector("#lobby-alert")
        waiting.check("#alert-sound")
        title = waiting.title()
        waiting.evaluate("window.__background = true")

        consent(joining, base, "steps", "join")
        screen(joining, "An AI mediator, from all our opinions")
        joining.wait_for_selector("#opinion-form")
        flashed = waiting.wait_for_function(
            "/Your group is ready/.test(document.title) ? document.title : null", timeout=15_000).json_value()
        assert flashed.startswith(("(9:", "(10:0")), flashed  # with the time left for the opinion (600 s)
        assert waiting.evaluate("window.__tones") == 2
        assert "Your group is ready" in waiting.inner_text("#group-ready")
        waiting.evaluate("window.__background = false; document.dispatchEvent(new Event('visibilitychange'))")
        assert waiting.title() == title  # back in front: the flashing stops

        # Withdrawal: a confirm step, then the group carries on with fewer members.
        joining.click("#withdraw-link")
        joining.click("#withdraw-submit")
        assert "Please tick the box" in joining.inner_text("#withdraw")
        joining.check("#withdraw-confirm")
        joining.click("#withdraw-submit")
        joining.wait_for_selector("#withdrawn-note")
        gone = Participant.objects.get(study=study, status="withdrawn")
        assert gone.recruitment_id is None
        assert GroupEvent.objects.filter(participant=gone, kind="member_withdrawn").exists()
        waiting.fill("#opinion-text", OPINIONS[0])
        waiting.click("#opinion-submit")
        waiting.wait_for_selector("#generating", timeout=15_000)  # not waiting for the one who left

    statuses = dict(Participant.objects.filter(study=study).values_list("recruitment_id", "status"))
    assert statuses == {"fail": "screened_out", "wait": "in_group", None: "withdrawn"}


def test_questionnaire_with_a_malformed_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    study = make_study(slug="quest")
    QuestionnaireItem.objects.create(study=study, order=1, key="trust", text="I trust the AI mediator.",
                                     kind="likert", scale_points=5)
    QuestionnaireItem.objects.create(study=study, order=2, key="hours", text="Hours online per day?", kind="number",
                                     min_value=0, max_value=24)
    participant = Participant.objects.create(study=study, status="completed", completion_code="DONE123",
                                             finished_at=timezone.now())
    with running_stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path, worker=False) as base, \
            chromium() as browser:
        [page] = phone_pages(browser, 1)
        page.goto(f"{base}/p/{participant.token}/complete/")
        page.wait_for_selector("#questionnaire")
        page.check("input[name='trust'][value='4']")
        page.fill("input[name='hours']", "30")  # the form has novalidate: the server's check is what counts
        page.click("#questionnaire-submit")
        assert "less than or equal to 24" in page.inner_text("#field-hours")
        assert page.is_checked("input[name='trust'][value='4']")  # nothing chosen is lost
        page.fill("input[name='hours']", "6")
        page.click("#questionnaire-submit")
        page.wait_for_selector("#completion-code")
        assert page.inner_text("#completion-code") == "DONE123"
    stored = dict(QuestionnaireAnswer.objects.filter(participant=participant).values_list("item__key", "value"))
    assert stored == {"trust": 4, "hours": 6.0}
