"""``selectors.study_arm``: the arm an offline tool generates with (none, one or several arms; a name)."""
from __future__ import annotations

import pytest

from deliberation.models import StudyArm
from deliberation.selectors import ArmChoiceError, study_arm

from ..factories import make_study

pytestmark = pytest.mark.django_db


def test_a_study_without_arms_gets_an_unsaved_arm_of_its_own_settings():
    study = make_study(slug="arm-none", generation_backend="extractive", generation_params={"temperature": 0.2})
    arm = study_arm(study)
    assert arm.pk is None and arm.name == "default" and arm.study == study
    assert arm.generation_backend == "extractive" and arm.generation_params == {"temperature": 0.2}
    assert not StudyArm.objects.filter(study=study).exists()  # a read: nothing stored
    with pytest.raises(ArmChoiceError, match="has no arm 'fast'; it has no arms yet"):
        study_arm(study, "fast")


def test_the_only_arm_is_the_default_and_a_name_picks_it():
    study = make_study(slug="arm-one", generation_backend="embedded")
    only = StudyArm.objects.create(study=study, name="only", generation_backend="extractive")
    assert study_arm(study) == only and study_arm(study).generation_backend == "extractive"
    assert study_arm(study, "only") == only
    with pytest.raises(ArmChoiceError, match=r"study 'arm-one' has no arm 'other'; its arms: 'only'"):
        study_arm(study, "other")


def test_several_arms_need_a_name_and_the_error_names_them():
    study = make_study(slug="arm-two")
    control = StudyArm.objects.create(study=study, name="control", generation_backend="extractive")
    treatment = StudyArm.objects.create(study=study, name="treatment", generation_backend="recorded")
    with pytest.raises(ArmChoiceError, match=r"has 2 arms \('control', 'treatment'\); name one with --arm NAME"):
        study_arm(study)
    assert study_arm(study, "treatment") == treatment and study_arm(study, "control") == control
    assert study_arm(study, "treatment").backend_options() == {}
    with pytest.raises(ArmChoiceError, match=r"no arm 'Control'; its arms: 'control', 'treatment'"):
        study_arm(study, "Control")  # names are exact
