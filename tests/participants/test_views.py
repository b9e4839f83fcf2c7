"""Participant pages over HTTP: join links, consent, resume, completion, escaping."""
from __future__ import annotations

import pytest
from django.urls import reverse

from deliberation.models import Opinion
from participants.models import Participant

from ..factories import make_group, make_study

pytestmark = pytest.mark.django_db


def test_join_link_creates_participant_keeps_params_and_shows_consent(client):
    make_study(slug="s1")
    response = client.get("/s/s1/?PROLIFIC_PID=p1&STUDY_ID=st&SESSION_ID=se&cohort=b")
    assert response.status_code == 302
    participant = Participant.objects.get()
    assert response["Location"] == f"/p/{participant.token}/"
    assert participant.url_params == {"PROLIFIC_PID": "p1", "STUDY_ID": "st", "SESSION_ID": "se", "cohort": "b"}
    page = client.get(response["Location"])
    assert b"consent-box" in page.content


def test_reused_prolific_id_and_cookie_resume_the_same_participant(client):
    make_study(slug="s1")
    first = client.get("/s/s1/?PROLIFIC_PID=p1")["Location"]
    assert client.get("/s/s1/?PROLIFIC_PID=p1")["Location"] == first
    assert client.get("/s/s1/")["Location"] == first  # same browser, link without the id: cookie
    assert Participant.objects.count() == 1


def test_consent_moves_to_lobby_and_requires_the_box(client):
    make_study(slug="s1")
    page = client.get("/s/s1/?PROLIFIC_PID=p1")["Location"]
    refused = client.post(page, {})
    assert b"Please tick the box" in refused.content
    assert Participant.objects.get().status == "joined"
    client.post(page, {"consent": "yes"})
    participant = Participant.objects.get()
    assert participant.status == "lobby" and participant.consented_at
    assert b"participant.js" in client.get(page).content


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
    page = client.get(client.get("/s/s1/")["Location"])
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
