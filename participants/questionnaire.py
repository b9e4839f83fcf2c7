"""The questionnaire after the final rating: configurable items (``QuestionnaireItem``) and the answers.

Completed participants of a study with items see it before their completion page (``questionnaire_pending``).
Answers are stored once, one row per item (``None`` for a skipped optional item), in one transaction;
a second submission (another tab, the back button) stores nothing. ``DEMOGRAPHICS`` is the preset an admin
action adds to a study.
"""
from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext_lazy

from core.errors import SubmissionError

from .models import Participant, ParticipantEvent, QuestionnaireAnswer, QuestionnaireItem

# key, text, kind, options: added by ``questionnaire_add_demographics`` (admin action on the study).
DEMOGRAPHICS = (
    ("age_band", "What is your age?", "single", ["18-24", "25-34", "35-44", "45-54", "55-64", "65 or over",
                                                  "Prefer not to say"]),
    ("gender", "What is your gender?", "single", ["Woman", "Man", "Non-binary", "Prefer to self-describe",
                                                   "Prefer not to say"]),
    ("education", "What is the highest level of education you have completed?", "single",
     ["Secondary school or less", "Vocational qualification", "Undergraduate degree", "Postgraduate degree",
      "Prefer not to say"]),
    ("country", "In which country do you live?", "text", []),
)


def questionnaire_items(*, study_id: int) -> list[QuestionnaireItem]:
    return list(QuestionnaireItem.objects.filter(study_id=study_id))


def questionnaire_pending(*, participant: Participant) -> bool:
    """A completed participant whose study has a questionnaire they have not answered yet."""
    return (participant.status == Participant.Status.COMPLETED
            and QuestionnaireItem.objects.filter(study_id=participant.study_id).exists()
            and not QuestionnaireAnswer.objects.filter(participant=participant).exists())


def questionnaire_submit(*, participant: Participant, values: dict[str, object]) -> bool:
    """Store the answers (``values``: item key -> cleaned value, as ``forms.QuestionnaireForm.values``); False when
    they were stored before. Keys must be exactly the study's items, else ``SubmissionError`` and nothing stored."""
    with transaction.atomic():
        participant = Participant.objects.select_for_update().get(pk=participant.pk)
        if participant.status != Participant.Status.COMPLETED:
            raise SubmissionError("not_completed", gettext_lazy(
                "The questionnaire opens when you have finished the study."))
        items = questionnaire_items(study_id=participant.study_id)
        if set(values) != {item.key for item in items}:
            raise SubmissionError("bad_answer", gettext_lazy(
                "The questionnaire changed while you answered it; please reload."))
        if QuestionnaireAnswer.objects.filter(participant=participant).exists():
            return False
        QuestionnaireAnswer.objects.bulk_create(
            QuestionnaireAnswer(participant=participant, item=item, value=values[item.key]) for item in items)
        ParticipantEvent.objects.create(participant=participant, kind="questionnaire_submitted",
                                        payload={"items": len(items)})
    return True


def questionnaire_add_demographics(*, study) -> int:
    """Add the demographics preset to ``study`` after its other items; items whose key exists are left alone.
    Returns how many were added."""
    existing = set(QuestionnaireItem.objects.filter(study=study).values_list("key", flat=True))
    last = QuestionnaireItem.objects.filter(study=study).order_by("-order").values_list("order", flat=True).first()
    order = (last or 0) + 1
    added = 0
    for key, text, kind, options in DEMOGRAPHICS:
        if key in existing:
            continue
        QuestionnaireItem.objects.create(study=study, key=key, text=text, kind=kind, options=options,
                                         order=order, required=False)
        order += 1
        added += 1
    return added
