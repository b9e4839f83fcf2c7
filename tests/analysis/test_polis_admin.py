"""An imported Polis conversation is a study the admin can save (its generation backend is a valid choice)."""
import json
from io import StringIO
from pathlib import Path

import pytest
from django import forms
from django.contrib import admin
from django.core.management import call_command
from django.forms.models import model_to_dict

from deliberation.models import Group, Study, StudyArm

LONDON = Path(__file__).resolve().parents[3] / "shared" / "data" / "polis" / "london.youth.policing"
pytestmark = pytest.mark.django_db


def as_posted(form_class, study) -> dict:
    """The change form's fields as a browser posts them back unchanged (JSON fields as JSON text)."""
    data = {}
    for name, value in model_to_dict(study, fields=form_class.base_fields).items():
        if isinstance(form_class.base_fields[name], forms.JSONField):
            data[name] = json.dumps(value)
        elif name == "questions":
            data[name] = [q.pk for q in value]
        elif isinstance(form_class.base_fields[name], forms.BooleanField):
            data[name] = "on" if value else ""
        elif value is not None:
            data[name] = value
    return data


def test_the_admin_form_accepts_an_imported_polis_study_unchanged(rf, admin_user):
    call_command("import_polis", str(LONDON), "--groups", "2", stdout=StringIO(), stderr=StringIO())
    study = Study.objects.get(slug="london-youth-policing")
    assert study.generation_backend in Study.Backend.values
    request = rf.get("/admin/deliberation/study/")
    request.user = admin_user
    model_admin = admin.site._registry[Study]
    form_class = model_admin.get_form(request, study, change=True)
    data = as_posted(form_class, study)
    form = form_class(data=data, instance=study)
    assert form.is_valid(), form.errors
    form.save()
    study.refresh_from_db()
    study.full_clean()


def test_the_admin_form_refuses_a_backend_that_is_not_a_choice(rf, admin_user):
    """What the import once stored ("polis"): the same form says so instead of saving."""
    call_command("import_polis", str(LONDON), "--groups", "2", stdout=StringIO(), stderr=StringIO())
    study = Study.objects.get(slug="london-youth-policing")
    request = rf.get("/admin/deliberation/study/")
    request.user = admin_user
    form_class = admin.site._registry[Study].get_form(request, study, change=True)
    assert form_class(data=as_posted(form_class, study), instance=study).is_valid()
    # The backend is set per arm (StudyArm): the import made one, and its admin form refuses "polis".
    arm = StudyArm.objects.get(study=study)
    assert arm.generation_backend in Study.Backend.values
    assert set(Group.objects.filter(study=study).values_list("arm_id", flat=True)) == {arm.pk}
    model_admin = admin.site._registry[Study]
    inline = next(i for i in model_admin.get_inline_instances(request, study) if i.model is StudyArm)
    arm_form_class = inline.get_formset(request, study).form
    data = as_posted(arm_form_class, arm)
    assert arm_form_class(data=data, instance=arm).is_valid()
    data["generation_backend"] = "polis"
    form = arm_form_class(data=data, instance=arm)
    assert not form.is_valid() and "generation_backend" in form.errors
