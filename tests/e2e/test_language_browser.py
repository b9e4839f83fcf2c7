"""A German study in real headless Chromium on a phone-sized window, against the real server: the consent page
(template), the lobby and the opinion form drawn by participant.js (the JavaScript catalog), and a server reply
through the websocket are all German."""
from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from ..factories import make_study
from .browser import chromium, phone_pages
from .stack import database_url, running_stack

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_german_study_speaks_german_in_templates_javascript_and_server_replies(tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    make_study(slug="deutsch", title="Steuern auf Lebensmittel", language="de", min_group_size=2, max_group_size=2,
               opinion_seconds=600)
    with running_stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path, worker=False) as base, \
            chromium() as browser:
        first, second = phone_pages(browser, 2)
        first.goto(f"{base}/s/deutsch/?PROLIFIC_PID=de-1&STUDY_ID=S1&SESSION_ID=X1")
        assert first.get_attribute("html", "lang") == "de"
        assert "Ihre Prolific-ID" in first.inner_text("#consent-disclosure")
        assert first.inner_text("#consent-submit") == "Weiter"
        first.check("#consent-box")
        first.click("#consent-submit")
        first.wait_for_selector("#lobby")
        lobby = first.inner_text("#lobby")
        assert "Warten auf weitere Teilnehmende" in lobby and "Gruppen mit 2–2 Personen" in lobby
        assert "Einen Ton abspielen, wenn meine Gruppe bereit ist" in lobby
        first.wait_for_function("document.getElementById('connection').textContent === 'verbunden'")
        assert first.inner_text("#withdraw-link") == "Von der Studie abmelden"  # the template

        second.goto(f"{base}/s/deutsch/?PROLIFIC_PID=de-2&STUDY_ID=S1&SESSION_ID=X2")
        second.check("#consent-box")
        second.click("#consent-submit")
        for page in (first, second):
            page.wait_for_selector("#opinion-form", timeout=30_000)
        form = first.inner_text("#opinion-form")
        assert "Was denken Sie?" in form and "Was Sie eingeben, wird schon während des Tippens gespeichert." in form
        assert first.inner_text("#opinion-submit") == "Absenden"  # a button label set by participant.js
        assert first.inner_text("#timer").startswith("Verbleibende Zeit: ")
        members = first.inner_text("#members").split()
        assert members[0] == "Sie" and "Mitglied" in members  # "You", "Member 2"
        assert first.inner_text("#group-ready").startswith("Ihre Gruppe ist bereit. Verbleibende Zeit für diesen")

        first.fill("#opinion-text", "zu kurz")
        first.click("#opinion-submit")
        first.wait_for_selector("#error:not([hidden])")
        assert first.inner_text("#error") == "Bitte schreiben Sie mindestens 3 Wörter."  # the server's reply
        assert first.input_value("#opinion-text") == "zu kurz"  # nothing typed is lost
