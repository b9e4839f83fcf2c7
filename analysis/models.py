"""The registries of trained models: reward models and fine-tuned generators, what each was trained on, how,
and how well it did.

``TrainedVersion`` is the abstract record every trained artefact shares (status, live progress, config, checkpoint,
data hash, metrics, parent, times); ``RewardModel`` and ``GeneratorModel`` are its concrete registries (the
legibility ``Verifier`` should adopt it too). Rows are created by the registry services
(``analysis.reward.registry``, ``analysis.generator.registry``) and filled in by training (from the command or
the Celery task); the admin shows progress live. A finished version's checkpoint is never overwritten.
"""
from __future__ import annotations

from django.db import models


class TrainedVersion(models.Model):
    """One trained version of a model (abstract): what it was trained with and on, its progress and results.

    Concrete registries: ``RewardModel``, ``GeneratorModel``; ``legibility.Verifier`` should adopt it too (left as
    it is for now while it is being changed). A finished version's checkpoint is never overwritten: training again
    makes a new version whose ``parent`` is the old one.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    study = models.ForeignKey("deliberation.Study", on_delete=models.PROTECT, related_name="%(class)ss")
    name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0, help_text="Share of training steps done, 0 to 1.")
    progress_message = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    config = models.JSONField(default=dict, help_text="The configuration it was (or will be) trained with.")
    checkpoint_path = models.CharField(max_length=500, blank=True, help_text="Folder with the trained weights.")
    data_hash = models.CharField(max_length=64, blank=True, help_text="sha256 of the training data.")
    metrics = models.JSONField(default=dict, blank=True, help_text="Training summary and validation metrics.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children",
                               help_text="The version this one was trained from.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-id"]


class RewardModel(TrainedVersion):
    """One version of a study's reward model; a finished version's checkpoint is never overwritten."""

    class Holdout(models.TextChoices):
        GROUP = "group", "Groups"
        QUESTION = "question", "Questions (all their groups)"
        TOPIC = "topic", "Topics (all their groups)"

    # Fields whose wording predates the abstract model are redeclared as they were (no schema change).
    study = models.ForeignKey("deliberation.Study", on_delete=models.PROTECT, related_name="reward_models")
    config = models.JSONField(default=dict, help_text="RewardConfig the model was (or will be) trained with.")
    checkpoint_path = models.CharField(max_length=500, blank=True, help_text="Folder with model.safetensors.")
    data_hash = models.CharField(max_length=64, blank=True, help_text="sha256 of the training ratings.")
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

    class Meta(TrainedVersion.Meta):
        pass

    def __str__(self) -> str:
        return self.name or f"reward model {self.pk}"


class GeneratorModel(TrainedVersion):
    """One fine-tuned version of the statement generator (SmolLM2 by default), trained on statements the study's
    groups endorsed. Served by the embedded backend when a study names it (``Study.generator_model``).

    It lives in ``analysis`` next to ``RewardModel`` because its training data is an export (``analysis.exports
    .sft_rows``); ``generation`` only serves its checkpoint folder (Django-free backends take a path).
    """

    study = models.ForeignKey("deliberation.Study", on_delete=models.PROTECT, related_name="generator_models")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children",
                               help_text="The version it was fine-tuned from; empty: the base model.")
    base_model = models.CharField(max_length=300, blank=True,
                                  help_text="The weights training started from (the base model's id or the parent).")
    training_candidate_ids = models.JSONField(default=list, blank=True,
                                              help_text="The candidates (statements) it was trained on.")
    validation_group_ids = models.JSONField(default=list, blank=True,
                                            help_text="Groups held out for validation (never trained on).")

    class Meta(TrainedVersion.Meta):
        pass

    def __str__(self) -> str:
        return self.name or f"generator model {self.pk}"


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
