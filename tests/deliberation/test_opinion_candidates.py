"""Members' opinions shown as candidates (a study option): rated and ranked with the model's statements, never
the winner, and the comparator of the preference rate (own opinion / other members' opinions)."""
from __future__ import annotations

import pytest

from analysis.reports.data import load_study
from core.metrics import PREFERENCE_OTHER_OPINIONS, PREFERENCE_OTHERS, PREFERENCE_OWN_OPINION, study_metrics
from deliberation.models import Candidate, Group
from deliberation.selectors import participant_snapshot
from deliberation.services import SubmissionError, opinion_submit, ratings_submit
from generation.services import candidates_generate

from ..factories import make_group, make_study

pytestmark = pytest.mark.django_db(transaction=True)

OPINIONS = [
    "Food taxes hit poor families hardest, so removing them is fair and simple.",
    "We need the revenue for schools; removing food taxes would cut public services.",
    "Remove taxes on basic groceries but keep them on sweets and luxury foods.",
]


def test_opinions_are_rated_and_ranked_but_never_win_and_feed_the_preference_rate():
    study = make_study(num_candidates=2, opinions_as_candidates=True)
    group, members = make_group(study, n=3)
    for member, text in zip(members, OPINIONS, strict=True):
        opinion_submit(participant=member, text=text)
    assert candidates_generate(group_id=group.pk, round=1) == 2 + 3
    model = list(Candidate.objects.filter(group=group, round=1, source="model").order_by("index"))
    shown_opinions = list(Candidate.objects.filter(group=group, round=1, source="opinion").order_by("index"))
    assert len(model) == 2 and [c.index for c in shown_opinions] == [2, 3, 4]
    assert {c.text for c in shown_opinions} == set(OPINIONS)
    assert {c.source_opinion.participant_id for c in shown_opinions} == {m.pk for m in members}
    assert all(not c.prompt and c.backend == "opinion" for c in shown_opinions)

    # the members see five statements, with nothing telling opinions from the model's statements
    snapshot = participant_snapshot(members[0])
    shown = snapshot["group"]["candidates"]
    assert {c["id"] for c in shown} == {c.pk for c in model + shown_opinions}
    assert all(set(c) == {"id", "text"} for c in shown)

    # every member ranks their own opinion first, then model[1], then the rest; a rating must cover all five
    own = {c.source_opinion.participant_id: c for c in shown_opinions}
    with pytest.raises(SubmissionError, match="rate every statement"):
        ratings_submit(participant=members[0], round=1,
                       ratings={c.pk: {"agreement": 4, "quality": 4} for c in model},
                       ranking=[c.pk for c in model])
    for member in members:
        order = [own[member.pk], model[1], model[0]] + [c for c in shown_opinions if c != own[member.pk]]
        agreement = {c.pk: 7 if c == own[member.pk] else 5 if c == model[1] else 2 for c in order}
        ratings_submit(participant=member, round=1,
                       ratings={cid: {"agreement": a, "quality": 4} for cid, a in agreement.items()},
                       ranking=[c.pk for c in order])
    group = Group.objects.get(pk=group.pk)
    assert group.winner_round1_id == model[1].pk  # the opinions ranked first by everyone cannot win

    summary = study_metrics(load_study(study), n_boot=50)
    pref = summary[summary["metric"] == "preference"].set_index("label")["estimate"]
    # per member: the winner beat model[0] (1 of 1), lost to the own opinion (0 of 1), beat both others' (2 of 2)
    assert pref[PREFERENCE_OTHERS] == 1.0
    assert pref[PREFERENCE_OWN_OPINION] == 0.0
    assert pref[PREFERENCE_OTHER_OPINIONS] == 1.0
    # agreement distributions count the model's statements only: 3 members x 2 statements
    agreement = summary[(summary["metric"] == "agreement")]
    assert agreement["n"].max() == 6


def test_without_the_option_no_opinion_is_shown():
    study = make_study(num_candidates=2)
    group, members = make_group(study, n=3)
    for member, text in zip(members, OPINIONS, strict=True):
        opinion_submit(participant=member, text=text)
    assert candidates_generate(group_id=group.pk, round=1) == 2
    assert not Candidate.objects.filter(group=group, source="opinion").exists()
