"""A study's language reaches every participant- and judge-facing text: pages, the websocket's replies, the
JavaScript catalog; an English study reads exactly as before and the admin stays English."""
from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async as adb
from channels.testing import WebsocketCommunicator
from django.utils import translation

from config.asgi import application
from participants.models import Participant

from ..factories import make_group, make_study
from ..joining import consent_hash, join_and_consent
from ..legibility.factories import make_study as make_legibility_study

pytestmark = pytest.mark.django_db


def _text(response) -> str:
    return response.content.decode()


def test_a_german_study_shows_its_consent_page_in_german_with_the_experimenters_text_verbatim(client):
    make_study(slug="de1", language="de", consent_text="Dies ist der Text der Forschenden. Keep as typed.")
    page = _text(client.get("/s/de1/?PROLIFIC_PID=p1"))
    assert '<html lang="de">' in page
    assert "Einwilligung" in page and "Ich habe den obigen Text gelesen" in page and ">Weiter<" in page
    assert "Dies ist der Text der Forschenden. Keep as typed." in page  # the experimenter's text is not translated
    assert "Der KI-Moderator läuft auf den eigenen Servern der Studie" not in page  # extractive backend
    assert "wörtlich aus den Meinungen der Mitglieder übernommen" in page  # the disclosure, in German
    assert "I have read the above" not in page and "How this study uses what you write" not in page


def test_a_missing_tick_and_a_full_page_flow_answer_in_german(client):
    make_study(slug="de2", language="de")
    page = client.get("/s/de2/?PROLIFIC_PID=p1")
    refused = client.post("/s/de2/?PROLIFIC_PID=p1", {"consent_sha256": consent_hash(page)})
    assert "Bitte setzen Sie das Häkchen, um Ihre Einwilligung zu geben" in _text(refused)
    participant_url = join_and_consent(client, "/s/de2/?PROLIFIC_PID=p1")["Location"]
    study_page = _text(client.get(participant_url))
    assert "Verbindung wird hergestellt …" in study_page and "Von der Studie abmelden" in study_page
    assert study_page.index("/jsi18n/de/") < study_page.index("participant.js")  # the catalog first
    withdraw = _text(client.post(participant_url + "withdraw/", {}))
    assert "Bitte setzen Sie das Häkchen, um zu bestätigen" in withdraw and "Zurück zur Studie" in withdraw


def test_the_consent_disclosure_and_its_version_do_not_depend_on_who_asks():
    """The German wording is stored as the consent version whatever language is active (admin, command)."""
    from participants.services import current_consent

    study = make_study(slug="de3", language="de")
    with translation.override("en"):
        first = current_consent(study)
    with translation.override("de"):
        second = current_consent(study)
    assert first.pk == second.pk and "Ihre Prolific-ID" in first.disclosure


def test_error_pages_shown_to_participants_are_in_the_study_language(client):
    make_study(slug="de4", language="de", is_active=False)
    page = client.get("/s/de4/?PROLIFIC_PID=p1")
    assert page.status_code == 409 and "Diese Studie nimmt keine Teilnehmenden auf." in _text(page)
    make_study(slug="en4", is_active=False)
    page = client.get("/s/en4/?PROLIFIC_PID=p1")
    assert page.status_code == 409 and "This study is not accepting participants." in _text(page)


def test_an_english_study_reads_as_before_and_the_completion_page_follows_the_language(client):
    make_study(slug="en1")
    page = _text(client.get("/s/en1/?PROLIFIC_PID=p1"))
    assert '<html lang="en">' in page and "I have read the above and agree to take part." in page
    assert "Einwilligung" not in page
    group, members = make_group(make_study(slug="de5", language="de"))
    Participant.objects.filter(pk=members[0].pk).update(status="completed", completion_code="DONE123")
    done = _text(client.get(f"/p/{members[0].token}/complete/"))
    assert "Vielen Dank – Sie haben die Studie abgeschlossen." in done and "Ihr Abschlusscode lautet" in done


def test_the_javascript_catalog_is_served_in_each_language_and_refuses_others(client):
    german = client.get("/jsi18n/de/")
    assert german.status_code == 200 and german["Content-Type"].startswith("text/javascript")
    catalog = _text(german)
    assert '"Submit ratings and ranking": "Bewertungen und Rangfolge absenden"' in catalog
    assert "Warten auf weitere Teilnehmende" in catalog
    english = client.get("/jsi18n/en/")
    assert english.status_code == 200 and "django.gettext = function" in _text(english)
    assert "Bewertungen" not in _text(english)
    assert client.get("/jsi18n/xx/").status_code == 404


def test_a_german_judge_sees_consent_and_item_pages_in_german_and_the_admin_stays_english(client, admin_client):
    study = make_legibility_study(slug="leg-de", language="de")
    consent = _text(client.get("/legibility/s/leg-de/?PROLIFIC_PID=j1&STUDY_ID=S&SESSION_ID=X"))
    assert "So funktioniert es" in consent and "Sie beurteilen 6 Lösungen, jeweils 45 Sekunden lang." in consent
    assert ">Starten<" in consent
    judge_url = join_and_consent(client, "/legibility/s/leg-de/?PROLIFIC_PID=j1&STUDY_ID=S&SESSION_ID=X")["Location"]
    item = _text(client.get(judge_url))
    assert "Ist diese Lösung richtig?" in item and "Wahr (richtig)" in item and "/jsi18n/de/" in item
    bad = client.post(judge_url + "answer/", {"answer": "maybe"})
    assert bad.status_code == 400 and "Diese Antwort konnte nicht gelesen werden" in _text(bad)
    admin = _text(admin_client.get(f"/admin/legibility/legibilitystudy/{study.pk}/change/"))
    assert 'name="language"' in admin and "Save and continue editing" in admin  # the admin is not translated


def test_the_study_admin_has_the_language_field(admin_client):
    study = make_study(slug="adm", language="de")
    page = _text(admin_client.get(f"/admin/deliberation/study/{study.pk}/change/"))
    assert 'name="language"' in page and '<option value="de" selected>Deutsch</option>' in page
    assert "Save and continue editing" in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_websocket_replies_and_snapshots_are_in_the_study_language():
    group, members = await adb(make_group)(await adb(make_study)(slug="ws-de", language="de"))
    ws = WebsocketCommunicator(application, f"/ws/p/{members[0].token}/", headers=[(b"origin", b"http://localhost")])
    assert (await ws.connect())[0]
    snapshot = json.loads(await ws.receive_from(timeout=5))
    assert snapshot["type"] == "snapshot" and "Was Sie eingeben" in snapshot["study"]["opinion_notice"]
    await ws.send_to(text_data=json.dumps({"type": "submit_opinion", "text": "zu kurz", "ref": "r1"}))
    await ws.send_to(text_data=json.dumps({"type": "submit_critique", "text": "zu früh", "ref": "r2"}))
    replies = {}
    while len(replies) < 2:
        message = json.loads(await ws.receive_from(timeout=5))
        if message["type"] == "error":
            replies[message["ref"]] = message
    assert replies["r1"]["code"] == "too_short"
    assert replies["r1"]["message"] == "Bitte schreiben Sie mindestens 3 Wörter."
    assert replies["r2"]["code"] == "wrong_phase"
    assert replies["r2"]["message"] == "Das ist jetzt nicht möglich: Die Gruppe ist gerade in der Phase „Meinung“."
    await ws.send_to(text_data="not json")
    assert json.loads(await ws.receive_from(timeout=5))["message"] == "Nachrichten müssen gültiges JSON sein."
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_websocket_replies_of_an_english_study_are_unchanged():
    group, members = await adb(make_group)(await adb(make_study)(slug="ws-en"))
    ws = WebsocketCommunicator(application, f"/ws/p/{members[0].token}/", headers=[(b"origin", b"http://localhost")])
    assert (await ws.connect())[0]
    json.loads(await ws.receive_from(timeout=5))
    await ws.send_to(text_data=json.dumps({"type": "submit_critique", "text": "too early", "ref": "r2"}))
    while (message := json.loads(await ws.receive_from(timeout=5)))["type"] != "error":
        pass
    assert message["message"] == "That is not possible now: the group is in the opinion phase."
    await ws.disconnect()
