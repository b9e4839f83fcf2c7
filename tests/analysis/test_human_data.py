"""Bot answers are not human data: reports, exports, training sets and leave-one-out read only people's answers
unless asked (``AnswerQuerySet.human``), and whatever is exported says which rows a bot or a simulated
participant wrote."""
from __future__ import annotations

import json
from io import StringIO

import pandas as pd
import pytest
from django.core.management import call_command

from analysis.exports import preference_pairs, study_tables, wide_table
from analysis.loo_offline import finished_groups
from analysis.reports.data import load_group_texts, load_study
from analysis.reward.registry import study_rating_records
from deliberation.models import Critique, Group, Opinion, Rating
from participants.models import Participant

from .test_registry import make_rated_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def mixed():
    """Two groups of three: in the first a bot answered for the third member after they dropped (their
    opinion was theirs, their ratings and critique the bot's); in the second the third member is simulated."""
    study = make_rated_study(n_groups=2, slug="mixed")
    first, second = Group.objects.filter(study=study).order_by("id")
    taken = Participant.objects.filter(group=first).order_by("id").last()
    Rating.objects.filter(participant=taken).update(by_bot=True)
    Critique.objects.filter(participant=taken).update(by_bot=True)
    simulated = Participant.objects.filter(group=second).order_by("id").last()
    Participant.objects.filter(pk=simulated.pk).update(is_simulated=True)
    people = set(Participant.objects.filter(study=study).values_list("id", flat=True)) - {simulated.pk}
    return study, taken, simulated, people


def test_the_long_tables_and_training_sets_hold_human_answers_only_by_default(mixed):
    study, taken, simulated, people = mixed
    tables = study_tables(study)
    assert set(tables["participants"]["id"]) == people and not tables["participants"]["is_simulated"].any()
    assert set(tables["ratings"]["participant_id"]) == people - {taken.pk}
    assert not tables["ratings"]["by_bot"].any() and not tables["critiques"]["by_bot"].any()
    assert set(tables["opinions"]["participant_id"]) == people  # the dropped member's own opinion stays
    assert set(tables["critiques"]["participant_id"]) == people - {taken.pk}
    pairs = preference_pairs(tables)
    assert set(pairs["participant_id"]) == people - {taken.pk}
    assert not pairs["by_bot"].any() and not pairs["is_simulated"].any()
    wide = wide_table(tables)
    assert set(wide["participant_id"]) == people and "opinion_by_bot" in wide and "is_simulated" in wide


def test_bots_and_simulated_participants_only_when_asked_and_flagged(mixed):
    study, taken, simulated, people = mixed
    tables = study_tables(study, include_bots=True, include_simulated=True)
    ratings = tables["ratings"]
    assert set(ratings[ratings["by_bot"].astype(bool)]["participant_id"]) == {taken.pk}
    assert set(tables["participants"][tables["participants"]["is_simulated"].astype(bool)]["id"]) == {simulated.pk}
    pairs = preference_pairs(tables)
    assert set(pairs[pairs["by_bot"]]["participant_id"]) == {taken.pk}
    assert set(pairs[pairs["is_simulated"]]["participant_id"]) == {simulated.pk}
    only_bots = study_tables(study, include_bots=True)
    assert simulated.pk not in set(only_bots["ratings"]["participant_id"])
    assert taken.pk in set(only_bots["ratings"]["participant_id"])


def test_export_command_is_human_only_unless_asked_and_every_row_says_who_wrote_it(mixed, tmp_path):
    study, taken, simulated, people = mixed
    call_command("export", "--study", study.slug, "--out", str(tmp_path / "human"), stdout=StringIO(),
                 stderr=StringIO())
    call_command("export", "--study", study.slug, "--out", str(tmp_path / "all"), "--include-bots",
                 "--include-simulated", stdout=StringIO(), stderr=StringIO())
    for entity in ("opinions", "ratings", "critiques"):
        human = pd.read_csv(tmp_path / "human" / f"{entity}.csv")
        every = pd.read_csv(tmp_path / "all" / f"{entity}.csv")
        assert "by_bot" in human.columns and not human["by_bot"].any()
        assert simulated.pk not in set(human["participant_id"]) and simulated.pk in set(every["participant_id"])
        assert len(every) > len(human)
    assert pd.read_csv(tmp_path / "all" / "ratings.csv")["by_bot"].any()
    participants = pd.read_csv(tmp_path / "human" / "participants.csv")
    assert "is_simulated" in participants.columns and set(participants["id"]) == people
    manifest = json.loads((tmp_path / "all" / "manifest.json").read_text())
    assert manifest["include_bots"] and manifest["include_simulated"]
    assert not json.loads((tmp_path / "human" / "manifest.json").read_text())["include_bots"]


def test_report_inputs_are_human_only_by_default(mixed):
    study, taken, simulated, people = mixed
    data = load_study(study)
    assert set(data.ratings["participant_id"]) == people - {taken.pk}
    assert set(data.members["participant_id"]) == people  # the dropped member is a person (dropout counts)
    answered = set(map(tuple, data.submissions[["participant_id", "phase"]].values.tolist()))
    assert (taken.pk, "opinion") in answered and (taken.pk, "critique") not in answered
    assert simulated.pk not in set(data.submissions["participant_id"])
    assert len(load_study(study, include_bots=True, include_simulated=True).ratings) == Rating.objects.count()
    Group.objects.filter(study=study).update(winner_round1=Rating.objects.first().candidate)
    texts = load_group_texts(study)
    assert all(simulated.pk not in g.opinions for g in texts)
    assert any(simulated.pk in g.opinions for g in load_group_texts(study, include_simulated=True))


def test_reward_model_training_data_never_holds_bot_answers(mixed):
    study, taken, simulated, people = mixed
    records = study_rating_records(study=study)
    assert {r.member_id for r in records} == people - {taken.pk}
    with_simulated = study_rating_records(study=study, include_simulated=True)
    assert {r.member_id for r in with_simulated} == people - {taken.pk} | {simulated.pk}


def test_offline_leave_one_out_needs_two_human_opinions(mixed):
    study, taken, simulated, people = mixed
    first, second = Group.objects.filter(study=study).order_by("id")
    Group.objects.filter(study=study).update(winner_round1=Rating.objects.first().candidate)
    assert finished_groups(study) == [first, second]
    Opinion.objects.filter(group=first).exclude(participant=taken).update(by_bot=True)
    Participant.objects.filter(group=second).update(is_simulated=True)
    assert finished_groups(study) == []


def test_admin_lists_filter_on_the_new_flags(mixed, admin_client):
    study, taken, simulated, people = mixed
    for url, expected in [("/admin/deliberation/rating/?by_bot__exact=1", Rating.objects.filter(by_bot=True)),
                          ("/admin/deliberation/critique/?by_bot__exact=1", Critique.objects.filter(by_bot=True)),
                          ("/admin/deliberation/opinion/?participant__is_simulated__exact=1",
                           Opinion.objects.filter(participant=simulated)),
                          ("/admin/participants/participant/?is_simulated__exact=1", [simulated])]:
        response = admin_client.get(url)
        assert response.status_code == 200, url  # an unknown filter redirects with ?e=1
        assert response.context["cl"].result_count == len(expected) > 0, url


def test_report_command_reads_human_answers_unless_asked(mixed, tmp_path, monkeypatch):
    import analysis.reports.data as data

    study, taken, simulated, people = mixed
    asked = []

    def recording(study, **who):
        asked.append(who)
        return real(study, **who)

    real = data.load_study
    monkeypatch.setattr(data, "load_study", recording)
    for extra in ([], ["--include-bots", "--include-simulated"]):
        call_command("report", "--study", study.slug, "--out", str(tmp_path / "r.html"), "--no-representation",
                     "--bootstrap", "5", *extra, stdout=StringIO(), stderr=StringIO())
    assert asked == [{"include_bots": False, "include_simulated": False},
                     {"include_bots": True, "include_simulated": True}]
