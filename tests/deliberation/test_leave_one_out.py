"""Online leave-one-out condition: assignment at group creation, exclusion from every prompt, never shown."""
from __future__ import annotations

import json

import pytest
from django.urls import reverse

from deliberation.models import Candidate, Group, Opinion
from deliberation.selectors import participant_snapshot
from deliberation.services import assign_condition, critique_submit, opinion_submit, ratings_submit
from generation.services import candidates_generate

from ..factories import make_group, make_study

pytestmark = pytest.mark.django_db(transaction=True)

OPINIONS = [
    "Food taxes hit poor families hardest, so removing them is fair and simple.",
    "We need the revenue for schools; removing food taxes would cut public services.",
    "Remove taxes on basic groceries but keep them on sweets and luxury foods.",
]
CRITIQUES = ["Mention the poorest families first.", "Say where the lost revenue comes from.",
             "Name the luxury foods that stay taxed."]


def rate_all(member, round_):
    ids = list(Candidate.objects.filter(group=member.group, round=round_).values_list("id", flat=True))
    ratings_submit(participant=member, round=round_, ratings={c: {"agreement": 4, "quality": 4} for c in ids},
                   ranking=ids)


def test_assignment_is_balanced_in_blocks_reproducible_and_seeded():
    study = make_study(leave_one_out_share=0.5, generation_seed=3)
    members = (11, 12, 13)
    draws = [assign_condition(study, k, members) for k in range(20)]
    conditions = [c for c, _ in draws]
    assert all(conditions[i:i + 2].count("leave_one_out") == 1 for i in range(0, 20, 2))  # one per block of 2
    assert all(excluded in members for c, excluded in draws if c == "leave_one_out")
    assert all(excluded is None for c, excluded in draws if c == "standard")
    assert draws == [assign_condition(study, k, members) for k in range(20)]
    study.generation_seed = 4
    assert [assign_condition(study, k, members) for k in range(20)] != draws
    study.leave_one_out_share = 0.3  # blocks of ten, three of them leave-one-out
    assert [assign_condition(study, k, members)[0] for k in range(10)].count("leave_one_out") == 3
    study.leave_one_out_share = 0.0
    assert {assign_condition(study, k, members) for k in range(5)} == {("standard", None)}
    study.leave_one_out_share = 1.0
    assert assign_condition(study, 0, (11,)) == ("standard", None)  # nobody left to build from


def test_leave_one_out_group_never_sends_the_excluded_opinion_or_critique_to_the_model():
    study = make_study(leave_one_out_share=1.0, num_candidates=3)
    group, members = make_group(study, n=3)
    group.refresh_from_db()
    assert group.condition == "leave_one_out" and group.excluded_participant_id in {m.pk for m in members}
    excluded = next(m for m in members if m.pk == group.excluded_participant_id)
    text_of = dict(zip([m.pk for m in members], OPINIONS, strict=True))
    critique_of = dict(zip([m.pk for m in members], CRITIQUES, strict=True))
    for member in members:
        opinion_submit(participant=member, text=text_of[member.pk])
    assert candidates_generate(group_id=group.pk, round=1) == 3
    excluded_opinion = Opinion.objects.get(participant=excluded)
    for candidate in Candidate.objects.filter(group=group, round=1):
        prompt = json.dumps(candidate.prompt)
        assert text_of[excluded.pk][:40] not in prompt and text_of[excluded.pk][:40] not in candidate.text
        assert all(text_of[m.pk][:40] in prompt for m in members if m != excluded)
        assert excluded_opinion.pk not in candidate.opinion_order and len(candidate.opinion_order) == 2
        assert not candidate.included_opinions.filter(pk=excluded_opinion.pk).exists()
        assert candidate.included_opinions.count() == 2
    for member in members:
        rate_all(member, 1)
    for member in members:
        critique_submit(participant=member, text=critique_of[member.pk])
    assert candidates_generate(group_id=group.pk, round=2) == 3
    for candidate in Candidate.objects.filter(group=group, round=2):
        prompt = json.dumps(candidate.prompt)
        assert critique_of[excluded.pk] not in prompt and text_of[excluded.pk][:40] not in prompt
        assert all(critique_of[m.pk] in prompt for m in members if m != excluded)
        assert set(candidate.opinion_order) == set(
            Opinion.objects.filter(group=group).exclude(participant=excluded).values_list("pk", flat=True))
    for member in members:
        rate_all(member, 2)
    group.refresh_from_db()
    assert group.phase == "done"
    # Nobody, the excluded member included, can see the condition or who was left out.
    for member in members:
        snapshot = json.dumps(participant_snapshot(member))
        assert "leave_one_out" not in snapshot and "excluded" not in snapshot and "condition" not in snapshot


def test_standard_group_keeps_every_opinion():
    study = make_study(leave_one_out_share=0.0)
    group, members = make_group(study, n=3)
    for member, text in zip(members, OPINIONS, strict=True):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    group.refresh_from_db()
    assert group.condition == "standard" and group.excluded_participant_id is None
    assert all(c.included_opinions.count() == 3 for c in Candidate.objects.filter(group=group))


def test_when_only_the_excluded_member_wrote_an_opinion_the_group_still_gets_statements():
    from deliberation.services import group_force_advance

    study = make_study(leave_one_out_share=1.0)
    group, members = make_group(study, n=3)
    group.refresh_from_db()
    excluded = next(m for m in members if m.pk == group.excluded_participant_id)
    opinion_submit(participant=excluded, text=OPINIONS[0])
    group_force_advance(group_id=group.pk)
    assert candidates_generate(group_id=group.pk, round=1) == 2
    assert all(OPINIONS[0][:40] in json.dumps(c.prompt) for c in Candidate.objects.filter(group=group))
    # ...but the exclusion did not hold: the event says so and the analysis keeps the group out of the condition
    from analysis.reports.data import EXCLUSION_NOT_HELD, load_study
    from deliberation.models import GroupEvent

    assert GroupEvent.objects.filter(group=group, kind="exclusion_not_held").count() == 1
    assert load_study(study).groups.set_index("group_id").loc[group.pk, "condition"] == EXCLUSION_NOT_HELD


def test_analysis_keeps_leave_one_out_groups_whose_exclusion_held():
    from analysis.reports.data import load_study

    study = make_study(leave_one_out_share=1.0, num_candidates=2)
    group, members = make_group(study, n=3)
    for member, text in zip(members, OPINIONS, strict=True):
        opinion_submit(participant=member, text=text)
    assert candidates_generate(group_id=group.pk, round=1) == 2
    assert load_study(study).groups.set_index("group_id").loc[group.pk, "condition"] == "leave_one_out"


def test_admin_shows_condition_and_excluded_member_read_only(admin_client):
    study = make_study(leave_one_out_share=1.0)
    group, members = make_group(study, n=3)
    group.refresh_from_db()
    page = admin_client.get(reverse("admin:deliberation_group_changelist")).content.decode()
    assert "leave_one_out" in page and str(group.excluded_participant) in page
    detail = admin_client.get(reverse("admin:deliberation_group_change", args=[group.pk])).content.decode()
    assert "leave_one_out" in detail and 'name="condition"' not in detail  # shown, not editable
    assert Group.objects.get(pk=group.pk).condition == "leave_one_out"
