"""Participant identity, recruitment ids, consent, status and presence."""
from __future__ import annotations

import secrets

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

    FINISHED = (Status.COMPLETED, Status.LOBBY_TIMEOUT, Status.DROPPED)

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
