"""Questionnaire after the final rating (issue 18 item 3): items, validation, storage, the demographics preset."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from participants.models import Participant, ParticipantEvent, QuestionnaireAnswer, QuestionnaireItem
from participants.questionnaire import DEMOGRAPHICS, questionnaire_add_demographics

from ..factories import join, make_study

pytestmark = pytest.mark.django_db


def study_with_items(slug="qs"):
    study = make_study(slug=slug)
    QuestionnaireItem.objects.create(study=study, order=1, key="trust", text="I trust the AI mediator.",
                                     kind="likert", scale_points=5, options=["Disagree", "Agree"])
    QuestionnaireItem.objects.create(study=study, order=2, key="device", text="Which device?", kind="single",
                                     options=["Phone", "Laptop"])
    QuestionnaireItem.objects.create(study=study, order=3, key="apps", text="Which apps do you use?",
                                     kind="multiple", options=["Mail", "Chat", "News"], required=False)
    QuestionnaireItem.objects.create(study=study, order=4, key="hours", text="Hours online per day?", kind="number",
                                     min_value=0, max_value=24)
    QuestionnaireItem.objects.create(study=study, order=5, key="comments", text="Anything else?", kind="text",
                                     required=False)
    return study


def completed(study, pid="p1") -> Participant:
    participant = join(study, pid)
    Participant.objects.filter(pk=participant.pk).update(status="completed", completion_code="DONE123",
                                                         finished_at=timezone.now())
    participant.refresh_from_db()
    return participant


GOOD = {"trust": "4", "device": "Phone", "apps": ["Mail", "News"], "hours": "3.5", "comments": "Nice <b>study</b>"}


def test_a_completed_participant_answers_the_questionnaire_before_the_completion_page(client):
    participant = completed(study_with_items())
    complete = f"/p/{participant.token}/complete/"
    assert client.get(complete)["Location"] == f"/p/{participant.token}/questionnaire/"
    page = client.get(f"/p/{participant.token}/questionnaire/")
    assert page.status_code == 200 and b"I trust the AI mediator." in page.content and b"5 Agree" in page.content
    response = client.post(f"/p/{participant.token}/questionnaire/", GOOD)
    assert response["Location"] == complete
    stored = dict(QuestionnaireAnswer.objects.filter(participant=participant).values_list("item__key", "value"))
    assert stored == {"trust": 4, "device": "Phone", "apps": ["Mail", "News"], "hours": 3.5,
                      "comments": "Nice <b>study</b>"}
    assert ParticipantEvent.objects.get(participant=participant).kind == "questionnaire_submitted"
    done = client.get(complete)
    assert done.status_code == 200 and b"DONE123" in done.content
    assert client.get(f"/p/{participant.token}/questionnaire/")["Location"] == complete  # once only


def test_optional_items_may_be_skipped_and_are_stored_as_null(client):
    participant = completed(study_with_items())
    response = client.post(f"/p/{participant.token}/questionnaire/", {k: GOOD[k] for k in ("trust", "device", "hours")})
    assert response.status_code == 302
    stored = dict(QuestionnaireAnswer.objects.filter(participant=participant).values_list("item__key", "value"))
    assert stored["apps"] is None and stored["comments"] is None and stored["trust"] == 4


@pytest.mark.parametrize("field,value,message", [
    ("hours", "three", b"Please enter a number"),
    ("hours", "25", b"less than or equal to 24"),
    ("trust", "9", b"Please choose one of the options"),
    ("device", "Tablet", b"Please choose one of the options"),
    ("apps", ["Mail", "Games"], b"Please choose only from the options"),
    ("device", None, b"Please answer this question"),
])
def test_malformed_answers_get_a_clear_form_error_and_keep_every_other_answer(client, field, value, message):
    participant = completed(study_with_items())
    data = dict(GOOD)
    if value is None:
        del data[field]
    else:
        data[field] = value
    response = client.post(f"/p/{participant.token}/questionnaire/", data)
    assert response.status_code == 400
    assert message in response.content
    assert not QuestionnaireAnswer.objects.exists()
    # nothing typed is lost: the other answers are in the re-rendered form
    assert b"Nice &lt;b&gt;study&lt;/b&gt;" in response.content
    assert b'value="Phone"' in response.content and b"checked" in response.content


def test_people_who_did_not_complete_see_no_questionnaire(client):
    study = study_with_items()
    participant = join(study, "p9")
    assert participant.status == "lobby"
    assert client.get(f"/p/{participant.token}/questionnaire/")["Location"] == f"/p/{participant.token}/complete/"
    client.post(f"/p/{participant.token}/questionnaire/", GOOD)
    assert not QuestionnaireAnswer.objects.exists()


def test_without_items_the_completion_page_comes_straight_away(client):
    participant = completed(make_study(slug="plain"))
    assert client.get(f"/p/{participant.token}/complete/").status_code == 200


def test_demographics_preset_adds_its_items_once_after_the_others():
    study = study_with_items()
    assert questionnaire_add_demographics(study=study) == len(DEMOGRAPHICS)
    assert questionnaire_add_demographics(study=study) == 0
    keys = list(QuestionnaireItem.objects.filter(study=study).values_list("key", flat=True))
    assert keys == ["trust", "device", "apps", "hours", "comments", "age_band", "gender", "education", "country"]
    for item in QuestionnaireItem.objects.filter(study=study):
        item.full_clean()


def test_demographics_admin_action(admin_client):
    study = make_study(slug="demo-a")
    response = admin_client.post("/admin/deliberation/study/", {"action": "add_demographics",
                                                                 "_selected_action": [study.pk]}, follow=True)
    assert b"4 demographics items added" in response.content
    assert QuestionnaireItem.objects.filter(study=study).count() == 4


@pytest.mark.parametrize("fields,error_field", [
    ({"kind": "single", "options": ["Only one"]}, "options"),
    ({"kind": "multiple", "options": "a,b"}, "options"),
    ({"kind": "likert", "options": ["low"]}, "options"),
    ({"kind": "number", "min_value": 5, "max_value": 1}, "min_value"),
])
def test_misconfigured_items_are_refused_with_a_clear_message(fields, error_field):
    item = QuestionnaireItem(study=make_study(slug="bad"), key="k", text="t", **fields)
    with pytest.raises(ValidationError) as caught:
        item.full_clean()
    assert error_field in caught.value.message_dict


def test_answers_are_exported_long_and_wide(client, tmp_path):
    import csv

    from analysis.exports import export_study

    study = study_with_items()
    first, second = completed(study, "p1"), completed(study, "p2")
    client.post(f"/p/{first.token}/questionnaire/", GOOD)
    export_study(study, tmp_path, ("csv",))
    with open(tmp_path / "questionnaire_answers.csv", newline="") as handle:
        long_rows = list(csv.DictReader(handle))
    assert [(int(r["participant_id"]), r["item_key"], r["value"]) for r in long_rows] == [
        (first.pk, "trust", "4"), (first.pk, "device", "Phone"), (first.pk, "apps", '["Mail", "News"]'),
        (first.pk, "hours", "3.5"), (first.pk, "comments", "Nice <b>study</b>")]
    with open(tmp_path / "participants_wide.csv", newline="") as handle:
        wide = {int(r["participant_id"]): r for r in csv.DictReader(handle)}
    assert wide[first.pk]["q_trust"] == "4" and wide[first.pk]["q_apps"] == "Mail; News"
    assert wide[first.pk]["q_hours"] == "3.5" and wide[second.pk]["q_trust"] == ""
    with open(tmp_path / "questionnaire_items.csv", newline="") as handle:
        assert [r["key"] for r in csv.DictReader(handle)] == ["trust", "device", "apps", "hours", "comments"]


def test_the_analyst_report_summarises_the_questionnaire(client, admin_client):
    from analysis.questionnaire import questionnaire_summary

    study = study_with_items()
    for pid, data in (("p1", GOOD), ("p2", {**GOOD, "trust": "2", "apps": ["Chat"], "hours": "7"})):
        participant = completed(study, pid)
        client.post(f"/p/{participant.token}/questionnaire/", data)
    page = admin_client.get(f"/analysis/study/{study.slug}/report/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="questionnaire-summary"' in html
    assert "mean 3.00, median 3, range 2–4" in html  # trust: 4 and 2
    assert "Mail: 1, Chat: 1, News: 1" in html and "Phone: 2, Laptop: 0" in html
    assert "Nice <b>" not in html  # free texts stay in the exports; and everything is escaped
    frame = questionnaire_summary([{"key": "x", "text": "<i>", "kind": "number", "options": []}], [])
    assert frame.to_dict("records") == [{"key": "x", "text": "<i>", "kind": "number", "answered": 0, "summary": ""}]
