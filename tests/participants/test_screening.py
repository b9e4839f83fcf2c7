"""Screening (issue 18 item 2): questions between consent and the lobby, per-attempt answers, screened-out code."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from participants.models import Participant, ParticipantEvent, ScreeningAnswer, ScreeningQuestion

from ..factories import connect, make_study
from ..joining import join_and_consent

pytestmark = pytest.mark.django_db


def screened_study(slug="scr", attempts=1):
    study = make_study(slug=slug, completion_code_screened_out="SCREEN0", min_group_size=2, max_group_size=2)
    colour = ScreeningQuestion.objects.create(study=study, order=1, text="What colour is the sky on a clear day?",
                                              options=["Green", "Blue", "Red"], correct_option="Blue",
                                              attempts_allowed=attempts)
    attention = ScreeningQuestion.objects.create(study=study, order=2, text="Please choose 'Seven'.",
                                                 options=["Three", "Seven"], correct_option="Seven")
    return study, colour, attention


def consent(client, slug="scr", pid="p1"):
    response = join_and_consent(client, f"/s/{slug}/?PROLIFIC_PID={pid}&SESSION_ID=s")
    assert response.status_code == 302
    return Participant.objects.get(recruitment_id=pid)


def test_a_study_with_screening_questions_sends_consenting_people_to_them_not_to_the_lobby(client):
    study, colour, attention = screened_study()
    participant = consent(client)
    assert participant.status == "screening" and participant.lobby_entered_at is None
    page = client.get(f"/p/{participant.token}/", follow=True)
    assert page.redirect_chain[-1][0] == f"/p/{participant.token}/screening/"
    assert b"What colour is the sky" in page.content and b"Please choose" in page.content


def test_passing_enters_the_lobby_and_stores_each_answer(client):
    study, colour, attention = screened_study()
    participant = consent(client)
    response = client.post(f"/p/{participant.token}/screening/", {f"q{colour.pk}": "Blue", f"q{attention.pk}": "Seven"})
    assert response.status_code == 302 and response["Location"] == f"/p/{participant.token}/"
    participant.refresh_from_db()
    assert participant.status == "lobby" and participant.lobby_entered_at is not None
    rows = list(ScreeningAnswer.objects.filter(participant=participant).values_list("question_id", "attempt",
                                                                                    "answer", "correct"))
    assert sorted(rows) == sorted([(colour.pk, 1, "Blue", True), (attention.pk, 1, "Seven", True)])
    assert list(ParticipantEvent.objects.filter(participant=participant).values_list("kind", flat=True)) == [
        "screening_passed"]


def test_two_who_pass_are_matched_into_a_group_as_after_a_plain_consent(client):
    from django.test import Client

    study, colour, attention = screened_study()
    for pid in ("a", "b"):
        browser = Client()
        participant = consent(browser, pid=pid)
        connect(participant)  # their page's socket: matching takes connected people
        assert participant.group_id is None
        browser.post(f"/p/{participant.token}/screening/", {f"q{colour.pk}": "Blue", f"q{attention.pk}": "Seven"})
    members = list(Participant.objects.order_by("pk"))
    assert [m.status for m in members] == ["in_group", "in_group"]
    assert members[0].group_id == members[1].group_id is not None


def test_failing_ends_with_the_screened_out_code(client):
    study, colour, attention = screened_study()
    participant = consent(client)
    response = client.post(f"/p/{participant.token}/screening/", {f"q{colour.pk}": "Red", f"q{attention.pk}": "Seven"})
    assert response["Location"] == f"/p/{participant.token}/complete/"
    participant.refresh_from_db()
    assert participant.status == "screened_out" and participant.completion_code == "SCREEN0"
    assert participant.is_finished and participant.finished_at is not None
    page = client.get(response["Location"])
    assert b"SCREEN0" in page.content and b"cannot take part" in page.content
    assert ScreeningAnswer.objects.get(participant=participant, question=colour).correct is False
    event = ParticipantEvent.objects.get(participant=participant)
    assert event.kind == "screened_out" and event.payload == {"failed_questions": [colour.pk]}
    # the screening page is closed to them now
    assert client.get(f"/p/{participant.token}/screening/")["Location"] == f"/p/{participant.token}/"


def test_a_second_attempt_is_offered_and_stored_as_attempt_two(client):
    study, colour, attention = screened_study(attempts=2)
    participant = consent(client)
    retry = client.post(f"/p/{participant.token}/screening/", {f"q{colour.pk}": "Green", f"q{attention.pk}": "Seven"})
    assert retry.status_code == 200 and b"1 answer was not right" in retry.content
    assert b"Attempts left: 1" in retry.content
    assert f'name="q{attention.pk}"'.encode() not in retry.content  # only the question still open is asked again
    participant.refresh_from_db()
    assert participant.status == "screening"
    done = client.post(f"/p/{participant.token}/screening/", {f"q{colour.pk}": "Blue"})
    assert done["Location"] == f"/p/{participant.token}/"
    attempts = list(ScreeningAnswer.objects.filter(participant=participant, question=colour)
                    .values_list("attempt", "answer", "correct"))
    assert attempts == [(1, "Green", False), (2, "Blue", True)]
    participant.refresh_from_db()
    assert participant.status == "lobby"


@pytest.mark.parametrize("data", [{}, {"qX": "Blue"}, "tampered"])
def test_missing_or_tampered_answers_get_a_clear_error_and_store_nothing(client, data):
    study, colour, attention = screened_study()
    participant = consent(client)
    if data == "tampered":
        data = {f"q{colour.pk}": "Purple", f"q{attention.pk}": "Seven"}
    response = client.post(f"/p/{participant.token}/screening/", data)
    assert response.status_code == 400
    assert b"Please choose" in response.content
    assert not ScreeningAnswer.objects.exists()
    participant.refresh_from_db()
    assert participant.status == "screening"


def test_admin_refuses_a_question_whose_correct_answer_is_not_an_option():
    study = make_study(slug="bad")
    question = ScreeningQuestion(study=study, text="Pick", options=["Yes", "No"], correct_option="Maybe")
    with pytest.raises(ValidationError) as caught:
        question.full_clean()
    assert "correct_option" in caught.value.message_dict
    for options in (["Only"], "Yes,No", ["Yes", "Yes"], ["Yes", ""]):
        with pytest.raises(ValidationError) as caught:
            ScreeningQuestion(study=study, text="Pick", options=options, correct_option="Yes").full_clean()
        assert "options" in caught.value.message_dict


def study_form_data(admin_client, study) -> dict:
    """The study's admin change form as the browser would post it: one new arm (a study needs one), both other
    inlines empty."""
    page = admin_client.get(f"/admin/deliberation/study/{study.pk}/change/")
    assert page.status_code == 200 and b"screening_questions-TOTAL_FORMS" in page.content
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, list | dict)}
    data.update({k: ("on" if v else "") for k, v in form.initial.items() if isinstance(v, bool)})
    data = {k: v for k, v in data.items() if v != ""}
    data["questions"] = [q.pk for q in study.questions.all()]
    data["generation_params"] = "{}"
    data["reward_retrain_config"] = "{}"
    for prefix in ("screening_questions", "questionnaire_items"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0", f"{prefix}-MIN_NUM_FORMS": "0",
                     f"{prefix}-MAX_NUM_FORMS": "1000"})
    data.update({"arms-TOTAL_FORMS": "1", "arms-INITIAL_FORMS": "0", "arms-MIN_NUM_FORMS": "1",
                 "arms-MAX_NUM_FORMS": "1000", "arms-0-name": "default", "arms-0-weight": "1",
                 "arms-0-generation_backend": "extractive", "arms-0-generation_params": "{}", "arms-0-best_of_n": "0",
                 "arms-0-leave_one_out_share": "0.0", "arms-0-critique_round": "on"})
    return data


def test_admin_inline_shows_the_error_and_saves_nothing(admin_client):
    study = make_study(slug="inl")
    url = f"/admin/deliberation/study/{study.pk}/change/"
    data = study_form_data(admin_client, study)
    data.update({"screening_questions-TOTAL_FORMS": "1", "screening_questions-0-order": "1",
                 "screening_questions-0-text": "Pick yes", "screening_questions-0-options": '["Yes", "No"]',
                 "screening_questions-0-correct_option": "Maybe", "screening_questions-0-attempts_allowed": "1"})
    response = admin_client.post(url, data)
    assert response.status_code == 200, response.status_code
    assert b"The correct answer must be one of the options" in response.content
    assert not ScreeningQuestion.objects.exists()
    data["screening_questions-0-correct_option"] = "Yes"
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert ScreeningQuestion.objects.get().correct_option == "Yes"


def test_admin_questionnaire_inline_refuses_bad_items_with_clear_errors(admin_client):
    from participants.models import QuestionnaireItem

    study = make_study(slug="qinl")
    url = f"/admin/deliberation/study/{study.pk}/change/"
    data = study_form_data(admin_client, study)
    item = {"order": "1", "text": "Device?", "kind": "single", "options": '["Phone", "Laptop"]', "scale_points": "7",
            "required": "on"}
    data["questionnaire_items-TOTAL_FORMS"] = "2"
    for i in (0, 1):
        data.update({f"questionnaire_items-{i}-{k}": v for k, v in {**item, "key": "device"}.items()})
    response = admin_client.post(url, data)
    assert response.status_code == 200 and b"Please correct the duplicate data for" in response.content
    data["questionnaire_items-1-key"] = "device2"
    data["questionnaire_items-1-options"] = "Phone, Laptop"  # not JSON
    response = admin_client.post(url, data)
    assert response.status_code == 200 and b"Enter a valid JSON" in response.content
    assert not QuestionnaireItem.objects.exists()
    data["questionnaire_items-1-options"] = '["Phone", "Laptop"]'
    assert admin_client.post(url, data).status_code == 302
    assert QuestionnaireItem.objects.filter(study=study).count() == 2
