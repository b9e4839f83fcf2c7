"""Prompt templates as versioned data, editable in admin.

A version is immutable once saved: editing a template in admin saves a new version, so
every stored candidate keeps pointing at the exact wording that produced it.
"""
from __future__ import annotations

import string

from django.core.exceptions import ValidationError
from django.db import models

from .prompts import PromptTemplate as TemplateSpec

PLACEHOLDERS = {
    "consensus": {"question", "opinions"},
    "revision": {"question", "opinions", "previous", "critiques"},
    "question_generation": {"seed_questions", "n"},
    "prover_helpful": {"problem"},
    "prover_sneaky": {"problem"},
}


class PromptTemplate(models.Model):
    class Kind(models.TextChoices):
        CONSENSUS = "consensus", "Consensus from opinions"
        REVISION = "revision", "Revision from opinions, previous winner and critiques"
        QUESTION_GENERATION = "question_generation", "New questions from seed questions"
        PROVER_HELPFUL = "prover_helpful", "Legibility prover, helpful role (a GSM8K problem)"
        PROVER_SNEAKY = "prover_sneaky", "Legibility prover, sneaky role (a GSM8K problem)"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    version = models.PositiveIntegerField()
    system = models.TextField()
    user = models.TextField(help_text="Python format string; placeholders depend on the kind, e.g. {question}.")
    response_prefix = models.CharField(max_length=200, blank=True,
                                       help_text="Start of the answer that the model continues (a prefill).")
    notes = models.TextField(blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "-version"]
        constraints = [models.UniqueConstraint(fields=["kind", "version"], name="one_template_per_kind_version")]

    def __str__(self) -> str:
        return f"{self.kind} v{self.version}"

    def clean(self) -> None:
        used = {name for _, name, _, _ in string.Formatter().parse(self.user) if name}
        unknown = used - PLACEHOLDERS.get(self.kind, set())
        if unknown:
            raise ValidationError({"user": f"Unknown placeholder(s) {sorted(unknown)}; a {self.kind} template may "
                                           f"use {sorted(PLACEHOLDERS[self.kind])}."})

    def spec(self) -> TemplateSpec:
        return TemplateSpec(name=self.kind, version=str(self.version), system=self.system, user=self.user,
                            response_prefix=self.response_prefix)

    @classmethod
    def latest(cls, kind: str) -> PromptTemplate:
        """The newest version; version 1 is (re)created from the code's defaults if none exists."""
        from .prompts import TEMPLATES

        template = cls.objects.filter(kind=kind).order_by("-version").first()
        if template is None:
            default = TEMPLATES[kind]
            template, _ = cls.objects.get_or_create(kind=kind, version=1, defaults={
                "system": default.system, "user": default.user, "response_prefix": default.response_prefix,
                "notes": "default from generation/prompts.py"})
        return template
