"""The registry of trained reward models: what each was trained on, how, and how well it did.

Rows are created by ``analysis.reward.registry.reward_model_create`` and filled in by the
training service (from the command or the Celery task); the admin shows progress live.
"""
from __future__ import annotations

from django.db import models


class RewardModel(models.Model):
    """One version of a study's reward model; a finished version's checkpoint is never overwritten."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    class Holdout(models.TextChoices):
        GROUP = "group", "Groups"
        QUESTION = "question", "Questions (all their groups)"
        TOPIC = "topic", "Topics (all their groups)"

    study = models.ForeignKey("deliberation.Study", on_delete=models.PROTECT, related_name="reward_models")
    name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0, help_text="Share of training steps done, 0 to 1.")
    progress_message = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    config = models.JSONField(default=dict, help_text="RewardConfig the model was (or will be) trained with.")
    checkpoint_path = models.CharField(max_length=500, blank=True, help_text="Folder with model.safetensors.")
    data_hash = models.CharField(max_length=64, blank=True, help_text="sha256 of the training ratings.")
    metrics = models.JSONField(default=dict, blank=True, help_text="Training summary and validation metrics.")
    training_ratings = models.ManyToManyField("deliberation.Rating", related_name="+", blank=True,
                                              help_text="The ratings it was trained on.")
    validation_group_ids = models.JSONField(default=list, blank=True,
                                            help_text="Groups held out for validation (never trained on).")
    trained_group_ids = models.JSONField(default=list, blank=True,
                                         help_text="Groups whose ratings it was trained on: never scored as a test.")
    holdout = models.CharField(max_length=16, choices=Holdout.choices, default=Holdout.GROUP,
                               help_text="What is held out for validation: whole groups, every group of a share of "
                                         "the questions, or every group of a share of the topics.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children",
                               help_text="The version this one was retrained from or compared against.")
    promotion = models.JSONField(default=dict, blank=True,
                                 help_text="The promotion decision: both versions' pairwise accuracy on the same "
                                           "held-out groups, and why it was or was not promoted.")
    promoted_at = models.DateTimeField(null=True, blank=True, help_text="When it became the study's model.")
    heartbeat_at = models.DateTimeField(null=True, blank=True,
                                        help_text="Last sign of life of its training (stale runs are taken over).")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.name or f"reward model {self.pk}"


class RewardRetraining(models.Model):
    """Retraining state of one study: the row that is locked so at most one training runs per study.

    A finished group that makes a retraining due sets ``pending``; the one worker that holds ``running_version``
    trains, then looks at ``pending`` again, so any number of triggers during a run make exactly one more run.
    """

    study = models.OneToOneField("deliberation.Study", on_delete=models.CASCADE, primary_key=True,
                                 related_name="reward_retraining")
    pending = models.BooleanField(default=False, help_text="A retraining was asked for and has not started yet.")
    running_version = models.ForeignKey(RewardModel, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+", help_text="The version in training now, if any.")
    finished_groups_at_last_run = models.PositiveIntegerField(
        default=0, help_text="Finished groups when the last retraining started.")
    runs = models.PositiveIntegerField(default=0, help_text="Retrainings started so far.")
    last_message = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"retraining of {self.study}"


class AnalysisJob(models.Model):
    """A long analysis run (e.g. offline leave-one-out) done by Celery or inline, with progress for the admin."""

    class Kind(models.TextChoices):
        LOO_OFFLINE = "loo_offline", "Offline leave-one-out"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    kind = models.CharField(max_length=32, choices=Kind.choices, db_index=True)
    study = models.ForeignKey("deliberation.Study", on_delete=models.PROTECT, related_name="analysis_jobs")
    params = models.JSONField(default=dict, blank=True, help_text="What the job was asked to do.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0, help_text="Share of the work done, 0 to 1.")
    total = models.PositiveIntegerField(default=0, help_text="Units of work (e.g. groups).")
    done = models.PositiveIntegerField(default=0)
    progress_message = models.CharField(max_length=300, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"
