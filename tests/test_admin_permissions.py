"""Staff status alone does not let someone start training, advance a group or import questions: each needs the
model permission it acts under (issue 15, item 7). Superusers (``admin_client``) keep every power; the happy
paths are tested with them in tests/deliberation/test_experimenter.py and tests/analysis/test_retrain.py."""
from __future__ import annotations

import json

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, RequestFactory

from analysis.models import RewardModel
from deliberation.models import Group, Question
from legibility.models import LegibilityStudy

from .factories import make_group, make_study

pytestmark = pytest.mark.django_db


def staff(*permissions: str) -> User:
    """A staff user with exactly these ``app_label.codename`` permissions."""
    user = User.objects.create_user("staff", password="x", is_staff=True)
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return User.objects.get(pk=user.pk)  # fresh: no cached permissions


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def actions_for(model, user: User) -> set[str]:
    request = RequestFactory().get("/admin/")
    request.user = user
    return set(admin.site._registry[model].get_actions(request))


def test_queueing_training_needs_the_reward_models_change_permission():
    study = make_study()
    reward_model = RewardModel.objects.create(study=study, name="rm", status=RewardModel.Status.FAILED)
    viewer = staff("analysis.view_rewardmodel")
    assert {"queue_training", "promote"}.isdisjoint(actions_for(RewardModel, viewer))
    logged_in(viewer).post("/admin/analysis/rewardmodel/", {"action": "queue_training",
                                                           "_selected_action": [reward_model.pk]})
    assert list(RewardModel.objects.values_list("pk", "status")) == [(reward_model.pk, "failed")]  # nothing queued
    editor = User.objects.get(pk=viewer.pk)
    editor.user_permissions.add(Permission.objects.get(codename="change_rewardmodel"))
    editor = User.objects.get(pk=viewer.pk)
    assert {"queue_training", "promote"} <= actions_for(RewardModel, editor)


def test_queueing_a_verifier_round_needs_the_legibility_studys_change_permission():
    LegibilityStudy.objects.create(slug="leg", title="Legibility")
    assert "queue_next_round" not in actions_for(LegibilityStudy, staff("legibility.view_legibilitystudy"))
    User.objects.all().delete()
    assert "queue_next_round" in actions_for(LegibilityStudy, staff("legibility.view_legibilitystudy",
                                                                    "legibility.change_legibilitystudy"))


def test_advancing_a_group_from_the_monitor_needs_change_group():
    group, _ = make_group(n=3)
    viewer = logged_in(staff())
    assert viewer.get(f"/monitor/study/{group.study_id}/state.json").status_code == 200  # staff may watch
    assert viewer.post(f"/monitor/group/{group.pk}/advance/").status_code == 403
    assert Group.objects.get(pk=group.pk).phase == "opinion"
    assert not group.events.filter(kind="forced_by_experimenter").exists()
    User.objects.all().delete()
    assert logged_in(staff("deliberation.change_group")).post(f"/monitor/group/{group.pk}/advance/").status_code == 302
    assert Group.objects.get(pk=group.pk).phase == "done"


def test_importing_questions_needs_add_question():
    upload = SimpleUploadedFile("qs.json", json.dumps([{"question": "Should we plant more trees?"}]).encode())
    viewer = logged_in(staff("deliberation.view_question"))
    assert viewer.get("/admin/deliberation/question/import/").status_code == 403
    assert viewer.post("/admin/deliberation/question/import/", {"file": upload}).status_code == 403
    assert not Question.objects.exists()
    assert b"question/import/" not in viewer.get("/admin/deliberation/question/").content  # no button either
    User.objects.all().delete()
    importer = logged_in(staff("deliberation.view_question", "deliberation.add_question"))
    assert b"question/import/" in importer.get("/admin/deliberation/question/").content
    upload.seek(0)
    assert importer.post("/admin/deliberation/question/import/", {"file": upload}).status_code == 302
    assert Question.objects.filter(text="Should we plant more trees?").exists()
