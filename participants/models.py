"""Participant identity, recruitment ids, consent, status and presence."""
from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Recruited(models.Model):
    """Who came through a recruitment link: a secret token, the Prolific ids, every URL parameter, the browser.
    Shared by deliberation participants and legibility judges (``participants.services.join_or_resume``)."""

    token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    recruitment_id = models.CharField(max_length=128, null=True, blank=True, help_text="PROLIFIC_PID")
    recruitment_study_id = models.CharField(max_length=128, blank=True, help_text="STUDY_ID")
    recruitment_session_id = models.CharField(max_length=128, blank=True, help_text="SESSION_ID")
    url_params = models.JSONField(default=dict, blank=True, help_text="Every query parameter of the join link.")
    user_agent = models.CharField(max_length=400, blank=True)
    consent_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="Version of the consent text (experimenter's text + generated disclosure) "
                                         "shown when they consented; the texts are under Consent versions.")
    consent_sha256 = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the consent text they agreed to (participants.consent).")

    class Meta:
        abstract = True


class ConsentVersionBase(models.Model):
    """One wording of a study's consent page: the experimenter's text, verbatim, and the disclosure the toolkit
    generated from the study's settings. A new version whenever either changes (``participants.services.
    current_consent``); rows are never edited, so a participant's ``consent_version`` names what they read."""

    version = models.PositiveIntegerField()
    experimenter_text = models.TextField(help_text="The study's consent text, verbatim.")
    disclosure = models.TextField(help_text="Generated from the study's settings (participants.consent).")
    sha256 = models.CharField(max_length=64, help_text="participants.consent.consent_sha256 of the two texts.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["study", "version"]

    def __str__(self) -> str:
        return f"{self.study} consent v{self.version}"


class ConsentVersion(ConsentVersionBase):
    study = models.ForeignKey("deliberation.Study", on_delete=models.PROTECT, related_name="consent_versions")

    class Meta(ConsentVersionBase.Meta):
        constraints = [
            models.UniqueConstraint(fields=["study", "version"], name="one_consent_version_number_per_study"),
            models.UniqueConstraint(fields=["study", "sha256"], name="one_consent_version_per_text"),
        ]


class ParticipantQuerySet(models.QuerySet):
    def human(self, *, include_simulated: bool = False) -> ParticipantQuerySet:
        """Without the simulated participants of ``run_bots`` unless asked (see ``AnswerQuerySet.human``)."""
        return self if include_simulated else self.filter(is_simulated=False)


class Participant(Recruited):
    class Status(models.TextChoices):
        JOINED = "joined"  # not consented: rows made in code, or from before the consent POST created the row
        LOBBY = "lobby"
        IN_GROUP = "in_group"
        COMPLETED = "completed"
        LOBBY_TIMEOUT = "lobby_timeout"
        DROPPED = "dropped"
        SCREENING = "screening"  # consented, answering the study's screening questions before the lobby
        SCREENED_OUT = "screened_out"  # failed screening: finished with the study's screened-out code
        WITHDRAWN = "withdrawn"  # withdrew from the study (participants.services.participant_withdraw)

    FINISHED = (Status.COMPLETED, Status.LOBBY_TIMEOUT, Status.DROPPED, Status.SCREENED_OUT, Status.WITHDRAWN)

    study = models.ForeignKey("deliberation.Study", on_delete=models.PROTECT, related_name="participants")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.JOINED, db_index=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    lobby_entered_at = models.DateTimeField(null=True, blank=True)
    group = models.ForeignKey("deliberation.Group", null=True, blank=True, on_delete=models.PROTECT,
                              related_name="members")
    position = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Member number within the group.")
    completion_code = models.CharField(max_length=64, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True,
                                        help_text="When a websocket of theirs last connected or went away.")
    taken_over_at = models.DateTimeField(
        null=True, blank=True, db_index=True,
        help_text="Dropped out mid-group; a simulated participant answered for them from then on (bot takeover).")
    is_simulated = models.BooleanField(
        default=False, help_text="A simulated participant (run_bots) joined with a signed bot token; never human data.")
    withdrawn_at = models.DateTimeField(
        null=True, blank=True, help_text="Withdrew from the study; their texts were handled per the study's "
                                         "withdrawal policy (the row itself is kept: the event log names it).")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ParticipantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "recruitment_id"], condition=Q(recruitment_id__isnull=False),
                                    name="one_participant_per_recruitment_id"),
        ]
        permissions = [("relink_participant", "Can re-link a participant to a new device")]
        indexes = [models.Index(fields=["study", "status", "lobby_entered_at"])]

    def __str__(self) -> str:
        return self.recruitment_id or f"participant {self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class Presence(models.Model):
    """One open websocket. A participant is connected while a row has pinged recently."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="presences")
    channel_name = models.CharField(max_length=200, unique=True)
    connected_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(db_index=True)


class ParticipantEvent(models.Model):
    """Append-only audit log of what happened to one participant outside a group's own log (``GroupEvent``):
    screening passed or failed, questionnaire submitted, withdrawal. ``save()`` / ``delete()`` refuse changes."""

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=48)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError("Participant events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Participant events are append-only.")


def _options_problem(options: object) -> str | None:
    if not isinstance(options, list) or not all(isinstance(o, str) and o.strip() for o in options):
        return "Give the options as a JSON list of non-empty strings, e.g. [\"red\", \"green\"]."
    if len({o.strip() for o in options}) != len(options):
        return "Each option must be different."
    return None


class ScreeningQuestion(models.Model):
    """A comprehension or attention check shown after consent and before the lobby. A participant who has used up
    ``attempts_allowed`` on a question without choosing ``correct_option`` is screened out."""

    study = models.ForeignKey("deliberation.Study", on_delete=models.CASCADE, related_name="screening_questions")
    order = models.PositiveSmallIntegerField(default=0)
    text = models.TextField()
    options = models.JSONField(default=list, help_text='The choices, as a JSON list: ["Yes", "No", "Not sure"].')
    correct_option = models.CharField(max_length=300, help_text="Exactly one of the options.")
    attempts_allowed = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1),
                                                                                MaxValueValidator(10)])

    class Meta:
        ordering = ["study", "order", "id"]

    def __str__(self) -> str:
        return self.text[:80]

    def clean(self) -> None:
        if problem := _options_problem(self.options):
            raise ValidationError({"options": problem})
        if len(self.options) < 2:
            raise ValidationError({"options": "Give at least two options."})
        if self.correct_option not in self.options:
            raise ValidationError({"correct_option": "The correct answer must be one of the options, exactly as "
                                                     "written there."})


class ScreeningAnswer(models.Model):
    """One answer to one screening question, per attempt (attempt 1, 2, ...)."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="screening_answers")
    question = models.ForeignKey(ScreeningQuestion, on_delete=models.PROTECT, related_name="answers")
    attempt = models.PositiveSmallIntegerField()
    answer = models.CharField(max_length=300)
    correct = models.BooleanField()
    answered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["participant", "question", "attempt"]
        constraints = [models.UniqueConstraint(fields=["participant", "question", "attempt"],
                                               name="one_screening_answer_per_attempt")]


class QuestionnaireItem(models.Model):
    """One item of the questionnaire shown after the final rating."""

    class Kind(models.TextChoices):
        LIKERT = "likert", "Likert scale (1 to N)"
        SINGLE = "single", "Single choice"
        MULTIPLE = "multiple", "Multiple choice"
        TEXT = "text", "Free text"
        NUMBER = "number", "Number"

    study = models.ForeignKey("deliberation.Study", on_delete=models.CASCADE, related_name="questionnaire_items")
    order = models.PositiveSmallIntegerField(default=0)
    key = models.SlugField(max_length=64, help_text="Column name in exports (unique within the study).")
    text = models.TextField()
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.LIKERT)
    options = models.JSONField(default=list, blank=True,
                               help_text="Single/multiple choice: the choices as a JSON list. Likert: optional "
                                         "labels of the two ends, e.g. [\"Strongly disagree\", \"Strongly agree\"].")
    scale_points = models.PositiveSmallIntegerField(default=7, validators=[MinValueValidator(2), MaxValueValidator(11)],
                                                    help_text="Likert: number of points.")
    min_value = models.FloatField(null=True, blank=True, help_text="Number: smallest accepted.")
    max_value = models.FloatField(null=True, blank=True, help_text="Number: largest accepted.")
    required = models.BooleanField(default=True)

    class Meta:
        ordering = ["study", "order", "id"]
        constraints = [models.UniqueConstraint(fields=["study", "key"], name="one_questionnaire_key_per_study")]

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        if self.kind in (self.Kind.SINGLE, self.Kind.MULTIPLE):
            if problem := _options_problem(self.options):
                raise ValidationError({"options": problem})
            if len(self.options) < 2:
                raise ValidationError({"options": "A choice item needs at least two options."})
        elif self.kind == self.Kind.LIKERT and self.options:
            if (problem := _options_problem(self.options)) or len(self.options) != 2:
                raise ValidationError({"options": problem or "Give two end labels, or none."})
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise ValidationError({"min_value": "Must not exceed the largest accepted value."})


class QuestionnaireAnswer(models.Model):
    """A participant's answer to one questionnaire item: a number, a string, a list of strings, or null (skipped)."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="questionnaire_answers")
    item = models.ForeignKey(QuestionnaireItem, on_delete=models.PROTECT, related_name="answers")
    value = models.JSONField(null=True)
    answered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["participant", "item"], name="one_questionnaire_answer")]
