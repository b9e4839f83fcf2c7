"""Participant-facing forms built from a study's configuration: screening and the questionnaire.

Labels and options are the experimenter's own text, shown as typed; the form's own words are in the study's
language (the views render it under ``core.i18n``). Django's form machinery validates every answer and re-renders
the page with a clear message beside the field and every other answer kept, so malformed input (a tampered option,
a word where a number goes) loses nothing.
"""
from __future__ import annotations

from django import forms
from django.utils.translation import gettext, gettext_lazy

from .models import QuestionnaireItem, ScreeningQuestion

PLEASE_CHOOSE = gettext_lazy("Please choose an answer.")
ONE_OF_THE_OPTIONS = gettext_lazy("Please choose one of the options.")
PLEASE_ANSWER = gettext_lazy("Please answer this question.")


def screening_field_name(question: ScreeningQuestion) -> str:
    return f"q{question.pk}"


class ScreeningForm(forms.Form):
    """One radio choice per open screening question."""

    def __init__(self, *args, questions: list[tuple[ScreeningQuestion, int]], **kwargs):
        super().__init__(*args, **kwargs)
        for question, attempts_left in questions:
            help_text = "" if question.attempts_allowed == 1 else gettext("Attempts left: %(count)s") % {
                "count": attempts_left}
            self.fields[screening_field_name(question)] = forms.ChoiceField(
                label=question.text, choices=[(o, o) for o in question.options], widget=forms.RadioSelect,
                help_text=help_text, error_messages={"required": PLEASE_CHOOSE, "invalid_choice": ONE_OF_THE_OPTIONS})
        self.questions = [q for q, _ in questions]

    def answers(self) -> dict[int, str]:
        return {q.pk: self.cleaned_data[screening_field_name(q)] for q in self.questions}


def _likert_choices(item: QuestionnaireItem) -> list[tuple[str, str]]:
    points = item.scale_points
    labels = {1: item.options[0], points: item.options[1]} if len(item.options) == 2 else {}
    return [(str(i), f"{i} {labels[i]}" if i in labels else str(i)) for i in range(1, points + 1)]


def questionnaire_field(item: QuestionnaireItem) -> forms.Field:
    common = {"label": item.text, "required": item.required}
    choice_errors = {"invalid_choice": ONE_OF_THE_OPTIONS, "required": PLEASE_ANSWER}
    kind = QuestionnaireItem.Kind
    if item.kind == kind.LIKERT:
        return forms.TypedChoiceField(choices=_likert_choices(item), coerce=int, widget=forms.RadioSelect,
                                      empty_value=None, error_messages=choice_errors, **common)
    if item.kind == kind.SINGLE:
        return forms.ChoiceField(choices=[(o, o) for o in item.options], widget=forms.RadioSelect,
                                 error_messages=choice_errors, **common)
    if item.kind == kind.MULTIPLE:
        return forms.MultipleChoiceField(choices=[(o, o) for o in item.options], widget=forms.CheckboxSelectMultiple,
                                         error_messages={**choice_errors, "invalid_choice": gettext_lazy(
                                             "Please choose only from the options.")}, **common)
    if item.kind == kind.NUMBER:
        return forms.FloatField(min_value=item.min_value, max_value=item.max_value,
                                error_messages={"invalid": gettext_lazy("Please enter a number (digits, e.g. 42 or "
                                                                        "3.5)."),
                                                "required": PLEASE_ANSWER}, **common)
    return forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 3}),
                           error_messages={"required": PLEASE_ANSWER}, **common)


class QuestionnaireForm(forms.Form):
    def __init__(self, *args, items: list[QuestionnaireItem], **kwargs):
        super().__init__(*args, **kwargs)
        self.items = items
        for item in items:
            self.fields[item.key] = questionnaire_field(item)

    def values(self) -> dict[str, object]:
        """Answers by item key, JSON-ready: int (Likert), float (number), str, list of str, or None (skipped)."""
        found = {}
        for item in self.items:
            value = self.cleaned_data.get(item.key)
            found[item.key] = None if value in ("", [], None) else value
        return found
