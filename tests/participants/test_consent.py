"""Issue 15 item 2: the consent page and the opinion page say what the study does with a participant's text.

The experimenter's consent text is shown verbatim; the toolkit adds a disclosure generated from the study's
settings; every wording is a version, and each participant (and judge) stores the version and SHA-256 of the
wording they agreed to (admin, exports)."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from analysis.exports import study_tables, wide_table
from deliberation.selectors import participant_snapshot
from legibility.models import JudgeConsentVersion, JudgeSession
from participants.consent import (
    DeliberationUse,
    consent_sha256,
    deliberation_disclosure,
    judging_disclosure,
    opinion_notice,
)
from participants.models import ConsentVersion, Participant

from ..factories import make_group, make_study
from ..joining import consent_hash, join_and_consent
from ..legibility.factories import make_study as make_legibility_study

ROOT = Path(__file__).resolve().parents[2]


# --- the generated texts (pure) ------------------------------------------------------------------
def test_the_disclosure_says_what_each_setting_does_with_the_text():
    plain = deliberation_disclosure(DeliberationUse())
    assert "saved on the study's server as you type" in plain
    assert "may repeat or closely paraphrase your words" in plain
    assert "not sent to an outside service" in plain
    assert "train and evaluate AI models" in plain and "exported as a research data set" in plain
    for absent in ("word for word", "separate text-generation server", "not given to the AI mediator",
                   "computer program may answer", "predicts"):
        assert absent not in plain, absent

    assert "shown word for word, without your name, to the other members" in deliberation_disclosure(
        DeliberationUse(opinions_as_candidates=True))
    remote = deliberation_disclosure(DeliberationUse(backend="openai", generation_base_url="http://gpu-7.lab:8000/v1"))
    assert "sent to a separate text-generation server (gpu-7.lab)" in remote
    assert "not sent to an outside service" not in remote
    assert "sentences copied word for word" in deliberation_disclosure(DeliberationUse(backend="extractive"))
    assert "not given to the AI mediator" in deliberation_disclosure(DeliberationUse(leave_one_out=True))
    assert "computer program may answer in your place" in deliberation_disclosure(DeliberationUse(bot_takeover=True))
    assert "predicts" in deliberation_disclosure(DeliberationUse(reward_model=True))
    assert "train and evaluate AI models" in judging_disclosure()


def test_the_opinion_notice_never_says_others_will_not_see_an_opinion_they_will_see():
    shown = opinion_notice(DeliberationUse(opinions_as_candidates=True))
    assert "will see your opinion word for word" in shown and "not see" not in shown
    assert "will not see your opinion as you wrote it" in opinion_notice(DeliberationUse())
    assert "copied word for word" in opinion_notice(DeliberationUse(backend="extractive"))
    assert "(gpu-7.lab)" in opinion_notice(DeliberationUse(backend="openai", generation_base_url="http://gpu-7.lab/v1"))


def test_the_hash_covers_both_texts_and_where_one_ends():
    assert consent_sha256("a", "b") == consent_sha256("a", "b")
    assert len({consent_sha256("a", "b"), consent_sha256("a ", "b"), consent_sha256("a", "b "),
                consent_sha256("ab", ""), consent_sha256("", "ab")}) == 5


# --- the pages ------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_consent_page_shows_the_experimenters_text_verbatim_and_the_disclosure_of_the_studys_settings(client):
    approved = "Approved by board X-17.\nYou may withdraw at any time & keep your payment."
    make_study(slug="s1", consent_text=approved, opinions_as_candidates=True, generation_backend="openai",
               generation_base_url="http://127.0.0.1:8000/v1")
    page = client.get("/s/s1/?PROLIFIC_PID=p1&SESSION_ID=s").content.decode()
    assert "Approved by board X-17.<br>You may withdraw at any time &amp; keep your payment." in page
    assert "shown word for word, without your name, to the other members of your group" in page
    assert "separate text-generation server (127.0.0.1)" in page
    assert "Consent text version 1." in page


@pytest.mark.django_db(transaction=True)
def test_the_opinion_page_says_other_members_see_the_opinion_when_opinions_are_candidates():
    """Before: participant.js always said "Other members will not see it", also with opinions as candidates."""
    script = (ROOT / "static/js/participant.js").read_text()
    assert "Other members will not see it" not in script and "snapshot.study.opinion_notice" in script
    study = make_study(slug="shown", opinions_as_candidates=True, max_group_size=3)
    group, members = make_group(study, n=3)
    notice = participant_snapshot(members[0])["study"]["opinion_notice"]
    assert "Other members of your group will see your opinion word for word" in notice
    hidden = make_study(slug="hidden", max_group_size=3)  # the factory's extractive backend
    group, members = make_group(hidden, n=3)
    assert "will not see your whole opinion" in participant_snapshot(members[0])["study"]["opinion_notice"]


# --- versions and what each participant stores ---------------------------------------------------
@pytest.mark.django_db
def test_each_wording_is_a_version_and_each_participant_stores_the_version_and_hash_agreed_to():
    study = make_study(slug="s1", consent_text="Original wording.")

    def join(pid):
        join_and_consent(Client(), f"/s/s1/?PROLIFIC_PID={pid}&SESSION_ID=s")
        return Participant.objects.get(recruitment_id=pid)

    first = join("p1")
    v1 = ConsentVersion.objects.get(study=study)
    assert (first.consent_version, first.consent_sha256) == (1, v1.sha256)
    assert v1.experimenter_text == "Original wording." and v1.disclosure == study.consent_disclosure()
    assert v1.sha256 == consent_sha256("Original wording.", study.consent_disclosure())
    assert join("p2").consent_version == 1  # same wording, same version

    study.consent_text = "Amended wording."
    study.save()
    assert join("p3").consent_version == 2
    study.opinions_as_candidates = True  # the disclosure changes: a new version too
    study.save()
    p4 = join("p4")
    assert p4.consent_version == 3 and "word for word" in ConsentVersion.objects.get(study=study, version=3).disclosure
    study.consent_text, study.opinions_as_candidates = "Original wording.", False
    study.save()
    assert join("p5").consent_version == 1  # back to the first wording: its version
    assert list(ConsentVersion.objects.filter(study=study).values_list("version", flat=True)) == [1, 2, 3]
    assert len({p.consent_sha256 for p in Participant.objects.all()}) == 3


@pytest.mark.django_db
def test_a_consent_given_to_an_older_wording_is_refused_shown_the_new_one_and_stores_nothing(client):
    study = make_study(slug="s1", consent_text="Original wording.")
    link = "/s/s1/?PROLIFIC_PID=p1&SESSION_ID=s"
    page = client.get(link)
    study.consent_text = "Amended wording: now with a second session."
    study.save()
    refused = client.post(link, {"consent": "yes", "consent_sha256": consent_hash(page)})
    assert refused.status_code == 409
    assert b"changed since this page was opened" in refused.content and b"now with a second session" in refused.content
    assert not Participant.objects.exists()
    assert client.post(link, {"consent": "yes", "consent_sha256": consent_hash(refused)}).status_code == 302
    assert Participant.objects.get().consent_version == 2


@pytest.mark.django_db
def test_judges_store_the_version_and_hash_of_their_consent_text():
    study = make_legibility_study(consent_text="Judge wording.")
    join_and_consent(Client(), f"/legibility/s/{study.slug}/?PROLIFIC_PID=j1&SESSION_ID=s")
    session = study.sessions.get()
    version = JudgeConsentVersion.objects.get(study=study)
    assert (session.consent_version, session.consent_sha256) == (1, version.sha256)
    assert version.sha256 == consent_sha256("Judge wording.", judging_disclosure())


@pytest.mark.django_db
def test_a_judge_row_from_before_consents_on_its_page_to_the_wording_shown():
    study = make_legibility_study()
    session = JudgeSession.objects.create(study=study, recruitment_id="old")  # status "joined"
    url = f"/legibility/j/{session.token}/"
    client = Client()
    page = client.get(url)
    assert b"Your answers (true or false)" in page.content
    assert client.post(url, {"consent": "yes", "consent_sha256": "0" * 64}).status_code == 409
    assert client.post(url, {"consent": "yes", "consent_sha256": consent_hash(page)}).status_code == 302
    session.refresh_from_db()
    assert session.status == "judging" and session.consent_version == 1 and session.items.exists()


@pytest.mark.django_db
def test_admin_shows_the_consent_version_and_hash_read_only_and_exports_carry_them():
    study = make_study(slug="s1")
    join_and_consent(Client(), "/s/s1/?PROLIFIC_PID=p1&SESSION_ID=s")
    participant = Participant.objects.get()
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_participant"),
                               Permission.objects.get(codename="view_consentversion"))
    admin = Client()
    admin.force_login(staff)
    page = admin.get(f"/admin/participants/participant/{participant.pk}/change/").content.decode()
    assert participant.consent_sha256 in page and 'name="consent_sha256"' not in page  # shown, not editable
    assert participant.consent_sha256 in admin.get("/admin/participants/consentversion/").content.decode()
    csv = admin.post("/admin/participants/participant/", {"action": "export_csv", "_selected_action": [participant.pk]})
    header, row = csv.content.decode().splitlines()[:2]
    assert "consent_version" in header.split(",") and "consent_sha256" in header.split(",")
    assert participant.consent_sha256 in row

    tables = study_tables(study)
    assert tables["participants"]["consent_sha256"].tolist() == [participant.consent_sha256]
    wide = wide_table(tables)
    assert wide["consent_version"].tolist() == [1] and wide["consent_sha256"].tolist() == [participant.consent_sha256]
