"""Admin add/change forms of a study with its arms: clear validation errors for bad input, never a server error."""
from __future__ import annotations

from decimal import Decimal

import pytest

from deliberation.models import Group, Study, StudyArm

from ..factories import make_group, make_study

pytestmark = pytest.mark.django_db(transaction=True)
ADD = "/admin/deliberation/study/add/"


def study_form(**overrides) -> dict:
    data = {
        "title": "Two arms", "slug": "two-arms", "language": "en", "is_active": "on", "consent_text": "Consent.",
        "min_group_size": 3, "max_group_size": 4, "lobby_timeout_seconds": 300, "opinion_seconds": 300,
        "rating_seconds": 300, "critique_seconds": 240, "final_rating_seconds": 240, "max_text_chars": 1000,
        "num_candidates": 2, "aggregation_method": "schulze", "welfare_method": "utilitarian", "welfare_alpha": 1.0,
        "reward_retrain_config": "{}", "generation_concurrency": 4, "generation_timeout_seconds": 120,
        "generation_seed": 0, "bonus_per_completion": "1.00", "bonus_per_lobby_minute": "0.00",
        "bonus_per_phase": "0.10", "max_participants": "", "max_groups": "", "withdrawal_policy": "anonymise",
        "arms-TOTAL_FORMS": 2, "arms-INITIAL_FORMS": 0, "arms-MIN_NUM_FORMS": 1, "arms-MAX_NUM_FORMS": 1000,
    }
    for prefix in ("screening_questions", "questionnaire_items"):  # the study page's other inlines, left empty
        data.update({f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0, f"{prefix}-MIN_NUM_FORMS": 0,
                     f"{prefix}-MAX_NUM_FORMS": 1000})
    for i, (name, weight) in enumerate([("control", 1), ("treatment", 2)]):
        data.update({f"arms-{i}-name": name, f"arms-{i}-weight": weight, f"arms-{i}-generation_backend": "extractive",
                     f"arms-{i}-generation_params": "{}", f"arms-{i}-best_of_n": 0,
                     f"arms-{i}-leave_one_out_share": 0.0, f"arms-{i}-critique_round": "on"})
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_a_valid_two_arm_study_is_created_with_its_arms(admin_client):
    response = admin_client.post(ADD, study_form())
    assert response.status_code == 302, response.content.decode()[:3000]
    study = Study.objects.get(slug="two-arms")
    assert [(a.name, a.weight, a.generation_backend) for a in study.arms.order_by("id")] == [
        ("control", 1, "extractive"), ("treatment", 2, "extractive")]
    assert study.bonus_per_phase == Decimal("0.10")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"arms-TOTAL_FORMS": 0}, "A study needs at least one arm"),
    ({"arms-0-weight": 0}, "weight must be a whole number of at least 1"),
    ({"arms-1-weight": -3}, "Ensure this value is greater than or equal to 0"),
    ({"arms-1-name": "control"}, "Please correct the duplicate data for name"),
    ({"max_participants": 2}, "cannot fill one group of at least 3"),
    ({"max_groups": 0}, "A cap must be at least 1"),
    ({"arms-0-max_participants": 1}, "cannot fill one group of at least 3"),
    ({"bonus_per_completion": "-1.00"}, "A bonus amount cannot be negative"),
    ({"bonus_per_phase": "abc"}, "Enter a number"),
    ({"arms-0-best_of_n": 1}, "Generate at least as many candidates as are shown (2)"),
    ({"arms-0-best_of_n": 4}, "Best-of-N needs a trained reward model"),
    ({"arms-0-generation_backend": "openai", "arms-0-generation_base_url": "http://evil.example/v1"},
     "is not in GENERATION_ALLOWED_HOSTS"),
    ({"arms-0-generation_params": "{not json"}, "Enter a valid JSON"),
])
def test_bad_input_gets_a_clear_error_and_saves_nothing(admin_client, overrides, message):
    response = admin_client.post(ADD, study_form(**overrides))
    page = response.content.decode()
    assert response.status_code == 200 and message in page
    assert not Study.objects.filter(slug="two-arms").exists() and not StudyArm.objects.exists()


def test_change_form_keeps_an_arm_that_has_groups(admin_client):
    study = make_study(slug="running")
    group, _ = make_group(study, n=3)
    arm = Group.objects.get(pk=group.pk).arm
    data = study_form(slug="running", title="Running", **{
        "arms-TOTAL_FORMS": 1, "arms-INITIAL_FORMS": 1, "arms-0-id": arm.pk, "arms-0-study": study.pk,
        "arms-0-name": arm.name, "arms-0-DELETE": "on"})
    data = {k: v for k, v in data.items() if not k.startswith("arms-1-")}
    response = admin_client.post(f"/admin/deliberation/study/{study.pk}/change/", data)
    assert response.status_code == 200
    assert "would require deleting the following protected related objects" in response.content.decode()
    assert StudyArm.objects.filter(pk=arm.pk).exists()
    del data["arms-0-DELETE"]
    data["arms-0-weight"] = 3
    response = admin_client.post(f"/admin/deliberation/study/{study.pk}/change/", data)
    assert response.status_code == 302 and StudyArm.objects.get(pk=arm.pk).weight == 3


def test_an_old_study_with_arms_saves_even_if_its_unused_template_fields_would_not_pass(admin_client):
    """The study's own generation fields are not on the form once it has arms: they must not block a save."""
    study = make_study(slug="legacy", title="Legacy", num_candidates=2, best_of_n=2)
    make_group(study, n=3)  # gives the study its first arm from those fields
    Study.objects.filter(pk=study.pk).update(generation_base_url="http://not-allowed.example/v1")
    arm = StudyArm.objects.get(study=study)
    data = study_form(slug="legacy", title="Legacy", num_candidates=3, **{
        "arms-TOTAL_FORMS": 1, "arms-INITIAL_FORMS": 1, "arms-0-id": arm.pk, "arms-0-study": study.pk,
        "arms-0-name": arm.name, "arms-0-best_of_n": 0})
    data = {k: v for k, v in data.items() if not k.startswith("arms-1-")}
    response = admin_client.post(f"/admin/deliberation/study/{study.pk}/change/", data)
    assert response.status_code == 302
    assert Study.objects.get(pk=study.pk).num_candidates == 3
    data["arms-0-best_of_n"] = 2  # now the arm would generate fewer than are shown: its own form says so
    response = admin_client.post(f"/admin/deliberation/study/{study.pk}/change/", data)
    assert response.status_code == 200 and "Generate at least as many candidates as are shown (3)" in \
        response.content.decode()
