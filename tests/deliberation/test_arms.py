"""Study arms: weighted permuted blocks, formation, generation reading the group's arm, the data migration."""
from __future__ import annotations

import importlib
from collections import Counter

import pytest
from django.apps import apps

from core.blocks import weighted_block_choice
from deliberation.models import Candidate, Group, GroupEvent, StudyArm
from deliberation.services import assign_arm, opinion_submit, ratings_submit
from generation.services import candidates_generate

from ..factories import make_group, make_study

OPINIONS = [
    "Food taxes hit poor families hardest, so removing them is fair and simple.",
    "We need the revenue for schools; removing food taxes would cut public services.",
    "Remove taxes on basic groceries but keep them on sweets and luxury foods.",
]


def test_weighted_blocks_hold_each_arm_weight_times_and_are_reproducible():
    items = [("a", 2), ("b", 1), ("c", 3)]
    draws = [weighted_block_choice(items, seed=7, label="arm", ordinal=k) for k in range(60)]
    for start in range(0, 60, 6):  # every block of 2 + 1 + 3 = 6 groups
        assert Counter(draws[start:start + 6]) == {"a": 2, "b": 1, "c": 3}
    assert draws == [weighted_block_choice(items, seed=7, label="arm", ordinal=k) for k in range(60)]
    assert draws != [weighted_block_choice(items, seed=8, label="arm", ordinal=k) for k in range(60)]
    assert len({tuple(draws[s:s + 6]) for s in range(0, 60, 6)}) > 1  # blocks are permuted, not repeated


@pytest.mark.parametrize("weights", [[("a", 0)], [("a", 1), ("b", -2)], [("a", 1.5)], []])
def test_weighted_blocks_refuse_zero_negative_fractional_weights_and_no_arms(weights):
    with pytest.raises(ValueError):
        weighted_block_choice(weights, seed=1, label="arm", ordinal=0)


@pytest.mark.django_db(transaction=True)
def test_assign_arm_follows_the_seeded_weighted_blocks_and_skips_a_full_arm():
    study = make_study(generation_seed=11)
    big = StudyArm.objects.create(study=study, name="big", weight=2, generation_backend="extractive")
    small = StudyArm.objects.create(study=study, name="small", weight=1, generation_backend="extractive")
    arms = [assign_arm(study, k).name for k in range(12)]
    for start in range(0, 12, 3):
        assert Counter(arms[start:start + 3]) == {"big": 2, "small": 1}
    assert arms == [assign_arm(study, k).name for k in range(12)]
    small.max_groups = 1
    small.save()
    Group.objects.create(study=study, question=study.questions.get(), phase="done",
                         phase_started_at=big.created_at, arm=small)
    assert {assign_arm(study, k).name for k in range(12)} == {"big"}  # the full arm is skipped
    big.max_groups = 1
    big.save()
    Group.objects.create(study=study, question=study.questions.get(), phase="done",
                         phase_started_at=big.created_at, arm=big)
    assert assign_arm(study, 0) is None  # every arm full


@pytest.mark.django_db(transaction=True)
def test_groups_are_assigned_to_arms_at_formation_with_provenance():
    study = make_study(generation_seed=5)
    StudyArm.objects.create(study=study, name="control", weight=1, generation_backend="extractive")
    StudyArm.objects.create(study=study, name="treatment", weight=1, generation_backend="extractive",
                            critique_round=False)
    groups = [make_group(study, n=3)[0] for _ in range(4)]
    names = [g.arm.name for g in groups]
    assert Counter(names[:2]) == Counter(names[2:]) == {"control": 1, "treatment": 1}
    assert names == [assign_arm(study, k).name for k in range(4)]  # the same draw as the pure blocks
    for group in groups:
        formed = GroupEvent.objects.get(group=group, kind="group_formed")
        assert formed.payload["arm"]["arm"] == group.arm.name and formed.payload["arm"]["arm_id"] == group.arm_id
        assert formed.payload["arm"]["critique_round"] is group.arm.critique_round


@pytest.mark.django_db(transaction=True)
def test_generation_and_the_flow_read_the_groups_arm_not_the_study():
    # The study's own fields say: no opinions as candidates, critique round on, default parameters.
    study = make_study(num_candidates=2, opinions_as_candidates=False, critique_round=True)
    arm = StudyArm.objects.create(study=study, name="opinions-no-critique", generation_backend="extractive",
                                  opinions_as_candidates=True, critique_round=False,
                                  generation_params={"temperature": 0.3, "max_new_tokens": 40})
    group, members = make_group(study, n=3)
    assert group.arm_id == arm.pk
    for member, text in zip(members, OPINIONS, strict=True):
        opinion_submit(participant=member, text=text)
    assert candidates_generate(group_id=group.pk, round=1) == 2 + 3  # the arm's opinions as candidates
    model = Candidate.objects.filter(group=group, round=1, source="model")
    assert model.count() == 2 and {c.params["temperature"] for c in model} == {0.3}
    started = GroupEvent.objects.get(group=group, kind="generation_started")
    assert started.payload["arm"] == "opinions-no-critique" and started.payload["backend"] == "extractive"
    ids = list(Candidate.objects.filter(group=group, round=1).values_list("id", flat=True))
    for member in members:
        ratings_submit(participant=member, round=1, ratings={c: {"agreement": 4, "quality": 4} for c in ids},
                       ranking=ids)
    group.refresh_from_db()
    assert group.phase == "done"  # the arm has no critique round (the study's field says it has one)


@pytest.mark.django_db(transaction=True)
def test_leave_one_out_stays_inside_an_arm():
    study = make_study(generation_seed=3)
    StudyArm.objects.create(study=study, name="loo", generation_backend="extractive", leave_one_out_share=1.0)
    StudyArm.objects.create(study=study, name="plain", generation_backend="extractive", leave_one_out_share=0.0)
    groups = [make_group(study, n=3)[0] for _ in range(4)]
    assert {(g.arm.name, g.condition) for g in groups} == {("loo", "leave_one_out"), ("plain", "standard")}
    assert all(g.excluded_participant_id is not None for g in groups if g.arm.name == "loo")


@pytest.mark.django_db(transaction=True)
def test_data_migration_gives_each_existing_study_one_arm_from_its_settings():
    migration = importlib.import_module("deliberation.migrations.0014_default_arms")
    study = make_study(slug="old", critique_round=False, opinions_as_candidates=True, leave_one_out_share=0.25,
                       generation_params={"temperature": 0.5}, generation_model="m-1")
    other = make_study(slug="has-arms")
    kept = StudyArm.objects.create(study=other, name="mine", weight=3)
    question = study.questions.get()
    old_group = Group.objects.create(study=study, question=question, phase="done", phase_started_at=kept.created_at)
    migration.default_arms(apps, None)
    arm = StudyArm.objects.get(study=study)
    assert (arm.name, arm.weight, arm.critique_round, arm.opinions_as_candidates, arm.leave_one_out_share,
            arm.generation_params, arm.generation_model, arm.generation_backend) == (
        "default", 1, False, True, 0.25, {"temperature": 0.5}, "m-1", "extractive")
    assert Group.objects.get(pk=old_group.pk).arm_id == arm.pk
    assert list(StudyArm.objects.filter(study=other)) == [kept]  # a study with arms is left alone
    migration.default_arms(apps, None)  # again: nothing new
    assert StudyArm.objects.filter(study=study).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_consent_disclosure_covers_every_arm():
    study = make_study(slug="consent-arms", opinions_as_candidates=False, leave_one_out_share=0.0)
    StudyArm.objects.create(study=study, name="plain", generation_backend="extractive")
    before = study.consent_disclosure()
    assert "shown word for word" not in before and "not given to the AI mediator" not in before
    StudyArm.objects.create(study=study, name="rich", generation_backend="embedded", opinions_as_candidates=True,
                            leave_one_out_share=0.5)
    after = study.consent_disclosure()
    assert "shown word for word" in after and "not given to the AI mediator" in after
    assert "AI mediator runs on the study's own servers" in after  # the model arm, not the extractive one


@pytest.mark.django_db(transaction=True)
def test_data_migration_through_the_migration_executor():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = ("deliberation", "0013_study_arms_quotas_pause_bonuses"), ("deliberation", "0014_default_arms")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    old = executor.loader.project_state([before]).apps
    OldStudy, OldGroup, OldQuestion = (old.get_model("deliberation", n) for n in ("Study", "Group", "Question"))
    study = OldStudy.objects.create(slug="pre-arms", title="Before arms", best_of_n=0, critique_round=False,
                                    generation_backend="extractive", leave_one_out_share=0.5)
    question = OldQuestion.objects.create(text="Should the voting age be lowered to 16?")
    group = OldGroup.objects.create(study=study, question=question, phase="done", phase_started_at=study.created_at)
    executor = MigrationExecutor(connection)  # a fresh loader sees the rolled-back state
    executor.migrate([after])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # back to the latest schema for the models below
    arm = StudyArm.objects.get(study_id=study.pk)
    assert (arm.name, arm.critique_round, arm.leave_one_out_share, arm.generation_backend) == (
        "default", False, 0.5, "extractive")
    assert Group.objects.get(pk=group.pk).arm_id == arm.pk
