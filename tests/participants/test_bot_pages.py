"""What a bot reads from the real screening and questionnaire pages (``bots.pages``) and the answers it picks:
the server's own forms must accept every questionnaire answer, and screening answers follow the mode."""
from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from django.utils.datastructures import MultiValueDict

from bots.client import Bot, BotConfig, run_bots
from bots.pages import ScreeningError, page_errors, parse_form, questionnaire_choices, screening_choices
from bots.sources import opinion_source
from participants.forms import QuestionnaireForm
from participants.models import QuestionnaireAnswer, QuestionnaireItem
from participants.questionnaire import questionnaire_items

from .test_questionnaire import completed, study_with_items
from .test_screening import consent, screened_study

pytestmark = pytest.mark.django_db


def test_the_questionnaire_page_parses_and_every_drawn_answer_is_valid_for_its_kind(client):
    study = study_with_items()
    QuestionnaireItem.objects.create(study=study, order=6, key="age", text="Your age?", kind="number", min_value=18)
    QuestionnaireItem.objects.create(study=study, order=7, key="ratio", text="A share?", kind="number",
                                     min_value=0.2, max_value=0.8)
    participant = completed(study)
    form = parse_form(client.get(f"/p/{participant.token}/questionnaire/").content.decode())
    assert form.hidden.get("csrfmiddlewaretoken")
    kinds = {name: (f.kind, f.options, f.minimum, f.maximum) for name, f in form.fields.items()}
    assert kinds == {"trust": ("radio", ["1", "2", "3", "4", "5"], None, None),
                     "device": ("radio", ["Phone", "Laptop"], None, None),
                     "apps": ("checkbox", ["Mail", "Chat", "News"], None, None),
                     "hours": ("number", [], 0.0, 24.0), "comments": ("text", [], None, None),
                     "age": ("number", [], 18.0, None), "ratio": ("number", [], 0.2, 0.8)}
    assert form.fields["comments"].max_length == 2000 and form.fields["trust"].label == "I trust the AI mediator."

    items = questionnaire_items(study_id=study.pk)
    seen_apps = set()
    for seed in range(40):
        choices = questionnaire_choices(form, random.Random(seed))
        assert set(choices) == {item.key for item in items}  # every item answered, the optional ones too
        data = MultiValueDict({k: v if isinstance(v, list) else [v] for k, v in choices.items()})
        checked = QuestionnaireForm(data, items=items)
        assert checked.is_valid(), (seed, choices, checked.errors)
        values = checked.values()
        assert 1 <= values["trust"] <= 5 and 0 <= values["hours"] <= 24 and values["age"] >= 18
        assert 0.2 <= values["ratio"] <= 0.8 and values["apps"] and values["comments"]
        seen_apps.add(tuple(values["apps"]))
    assert len(seen_apps) > 2  # the rng varies the answers

    choices = questionnaire_choices(form, random.Random(1))  # and the page itself stores them
    response = client.post(f"/p/{participant.token}/questionnaire/", {**form.hidden, **choices})
    assert response.status_code == 302
    assert QuestionnaireAnswer.objects.filter(participant=participant).count() == len(items)


def test_screening_answers_follow_the_mode_and_pass_without_the_key_is_a_clear_error(client):
    study, colour, attention = screened_study(attempts=2)
    participant = consent(client)
    form = parse_form(client.get(f"/p/{participant.token}/screening/").content.decode())
    assert {name: f.options for name, f in form.fields.items()} == {
        f"q{colour.pk}": ["Green", "Blue", "Red"], f"q{attention.pk}": ["Three", "Seven"]}
    assert form.fields[f"q{colour.pk}"].label == "What colour is the sky on a clear day?"
    key = {colour.pk: "Blue", attention.pk: "Seven"}
    rng = random.Random(3)
    assert screening_choices(form, "pass", key, rng) == {f"q{colour.pk}": "Blue", f"q{attention.pk}": "Seven"}
    for _ in range(20):
        wrong = screening_choices(form, "fail", key, rng)
        assert wrong[f"q{colour.pk}"] in ("Green", "Red") and wrong[f"q{attention.pk}"] == "Three"
    drawn = {screening_choices(form, "random", {}, rng)[f"q{colour.pk}"] for _ in range(30)}
    assert drawn == {"Green", "Blue", "Red"}
    with pytest.raises(ScreeningError, match=r"screening='pass' needs their correct answers .*screening_answers"):
        screening_choices(form, "pass", {}, rng)
    with pytest.raises(ScreeningError, match="needs their correct answers"):
        screening_choices(form, "fail", {colour.pk: "Blue"}, rng)  # one question has no answer in the key
    with pytest.raises(ScreeningError, match="not among the options"):
        screening_choices(form, "pass", {colour.pk: "Purple", attention.pk: "Seven"}, rng)
    with pytest.raises(ScreeningError, match="unknown screening mode 'maybe'"):
        screening_choices(form, "maybe", key, rng)

    refused = client.post(f"/p/{participant.token}/screening/", {**form.hidden, f"q{colour.pk}": "Blue"})
    assert refused.status_code == 400 and page_errors(refused.content.decode()) == "Please choose an answer."
    with pytest.raises(ValueError, match="no form"):
        parse_form("<html><body><p>Hello</p></body></html>")


def test_a_fail_bot_that_meets_no_screening_says_so_and_an_unknown_mode_is_refused_before_any_bot_starts():
    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/s/"):
            return httpx.Response(302, headers={"Location": "/p/abcdefghijklmnopqrstuvwx/"})
        return httpx.Response(200, text="study page")

    async def join():
        bot = Bot(0, BotConfig(server="http://testserver", study="s1", screening="fail"),
                  opinion_source("question"), random.Random(0), "run")
        async with httpx.AsyncClient(transport=httpx.MockTransport(server), follow_redirects=True) as client:
            await bot.join(client)

    with pytest.raises(ScreeningError, match="screening='fail', but the study asked no screening questions"):
        asyncio.run(join())
    with pytest.raises(ValueError, match="unknown screening mode 'maybe': use one of pass, fail, random"):
        run_bots(BotConfig(server="http://127.0.0.1:9", study="s1", screening="maybe", progress=False))
