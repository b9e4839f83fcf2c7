"""Participant pages over HTTP: join links, consent, resume, completion, escaping."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from deliberation.models import Opinion
from participants.models import Participant

from ..factories import make_group, make_study
from ..joining import consent_hash, join_and_consent

pytestmark = pytest.mark.django_db


def test_join_link_shows_consent_and_the_consent_post_creates_the_participant_with_its_params(client):
    make_study(slug="s1")
    link = "/s/s1/?PROLIFIC_PID=p1&STUDY_ID=st&SESSION_ID=se&cohort=b"
    page = client.get(link)
    assert page.status_code == 200 and b"consent-box" in page.content
    assert not Participant.objects.exists()  # opening the link stores nothing
    response = client.post(link, {"consent": "yes", "consent_sha256": consent_hash(page)})
    assert response.status_code == 302
    participant = Participant.objects.get()
    assert response["Location"] == f"/p/{participant.token}/"
    assert participant.url_params == {"PROLIFIC_PID": "p1", "STUDY_ID": "st", "SESSION_ID": "se", "cohort": "b"}
    assert participant.status == "lobby" and participant.consented_at and participant.lobby_entered_at
    assert b"participant.js" in client.get(response["Location"]).content


def test_a_get_of_the_join_link_creates_nobody_however_often(client):
    """Issue 15 item 9: before, every GET of the link stored a participant row (crawlers, link previews)."""
    make_study(slug="s1")
    for query in ("", "?PROLIFIC_PID=p1", "?PROLIFIC_PID=p1&SESSION_ID=se", "?PROLIFIC_PID=p2&SESSION_ID=x"):
        assert client.get("/s/s1/" + query).status_code == 200
    assert not Participant.objects.exists()


def test_same_prolific_id_and_session_or_the_cookie_resume_the_same_participant(client):
    make_study(slug="s1")
    first = join_and_consent(client, "/s/s1/?PROLIFIC_PID=p1&SESSION_ID=se")["Location"]
    assert client.get("/s/s1/?PROLIFIC_PID=p1&SESSION_ID=se")["Location"] == first
    assert client.get("/s/s1/")["Location"] == first  # same browser, link without the id: cookie
    assert client.get("/s/s1/?PROLIFIC_PID=p1")["Location"] == first  # cookie, same id
    assert Client().get("/s/s1/?PROLIFIC_PID=p1&SESSION_ID=se")["Location"] == first  # another browser, both ids
    assert Participant.objects.count() == 1


def test_consent_requires_the_box_and_stores_nothing_without_it(client):
    make_study(slug="s1")
    link = "/s/s1/?PROLIFIC_PID=p1&SESSION_ID=se"
    page = client.get(link)
    refused = client.post(link, {"consent_sha256": consent_hash(page)})
    assert b"Please tick the box" in refused.content and b"consent-box" in refused.content
    assert not Participant.objects.exists()
    assert client.post(link, {"consent": "yes", "consent_sha256": consent_hash(page)}).status_code == 302
    assert Participant.objects.get().status == "lobby"


def test_a_row_from_before_still_consents_on_its_page(client):
    study = make_study(slug="s1")
    participant = Participant.objects.create(study=study, recruitment_id="old")  # status "joined"
    page_url = f"/p/{participant.token}/"
    page = client.get(page_url)
    assert b"consent-box" in page.content
    assert b"Please tick the box" in client.post(page_url, {"consent_sha256": consent_hash(page)}).content
    client.post(page_url, {"consent": "yes", "consent_sha256": consent_hash(page)})
    participant.refresh_from_db()
    assert participant.status == "lobby" and participant.consent_version == 1
    assert b"participant.js" in client.get(page_url).content


def test_inactive_study_and_unknown_links(client):
    make_study(slug="off", is_active=False)
    assert client.get("/s/off/").status_code == 409
    assert client.get("/s/nope/").status_code == 404
    assert client.get("/p/not-a-token/").status_code == 404


def test_completion_page_shows_code_and_prolific_link(client):
    study = make_study(slug="s1", prolific_redirect=True)
    participant = Participant.objects.create(study=study, status="completed", completion_code="DONE123")
    response = client.get(reverse("participant_complete", kwargs={"token": participant.token}))
    assert b"DONE123" in response.content
    assert b"https://app.prolific.com/submissions/complete?cc=DONE123" in response.content


def test_unfinished_participant_is_sent_back_from_completion(client):
    study = make_study(slug="s1")
    participant = Participant.objects.create(study=study, status="lobby")
    response = client.get(reverse("participant_complete", kwargs={"token": participant.token}))
    assert response.status_code == 302


def test_html_in_study_text_is_escaped_on_pages(client):
    make_study(slug="s1", title="<script>alert(1)</script>", consent_text="<img src=x onerror=alert(2)>")
    page = client.get("/s/s1/")
    assert b"<script>alert(1)" not in page.content and b"&lt;script&gt;" in page.content
    assert b"<img src=x" not in page.content


@pytest.mark.django_db(transaction=True)
def test_html_in_opinions_is_escaped_in_admin(admin_client):
    group, members = make_group(n=3)
    Opinion.objects.create(group=group, participant=members[0], text="<script>alert('x')</script>",
                           response_seconds=1)
    page = admin_client.get("/admin/deliberation/opinion/")
    assert b"<script>alert('x')</script>" not in page.content
    assert b"&lt;script&gt;" in page.content
