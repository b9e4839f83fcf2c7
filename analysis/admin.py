"""Reward model and generator versions and analysis jobs in the admin: status, live progress, results; queue
training here.

Each reward model row is one version: its validation accuracy, data size, held-out groups, parent and promotion
decision, and whether it is the version its study uses now (promoted).
"""
from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils.html import format_html

from .models import AnalysisJob, GeneratorModel, RewardModel, RewardRetraining


def progress_bar_html(progress: float):
    """The admin's progress bar for anything with a 0..1 ``progress`` (training, analysis jobs)."""
    return format_html('<progress value="{}" max="100"></progress> {}%', round(progress * 100), round(progress * 100))


@admin.action(description="Queue training of the selected models (Celery; a trained one gets a new version)",
              permissions=["change"])
def queue_training(modeladmin, request, queryset):
    from .reward.registry import (
        RewardModelError,
        reward_model_is_training,
        reward_model_new_version,
        study_rating_records,
        training_data_check,
    )
    from .tasks import train_reward_model

    queued = []
    for reward_model in queryset.select_related("study"):
        if reward_model_is_training(reward_model):
            messages.warning(request, f"{reward_model} (#{reward_model.pk}) is training now; not queued again.")
            continue
        try:
            training_data_check(study=reward_model.study, records=study_rating_records(study=reward_model.study))
        except RewardModelError as exc:
            messages.error(request, f"#{reward_model.pk}: {exc}")
            continue
        if reward_model.status != RewardModel.Status.QUEUED:  # done, failed or dead: its record and files are kept
            reward_model = reward_model_new_version(reward_model=reward_model)
        RewardModel.objects.filter(pk=reward_model.pk).update(status=RewardModel.Status.QUEUED, progress=0.0,
                                                              progress_message="queued", error="")
        train_reward_model.delay_on_commit(reward_model_id=reward_model.pk)
        queued.append(f"#{reward_model.pk}")
    if queued:
        messages.info(request, f"Queued {', '.join(queued)}; progress updates here every few seconds.")


@admin.action(description="Use the selected version for its study (promote)", permissions=["change"])
def promote(modeladmin, request, queryset):
    from .reward.registry import RewardModelError
    from .reward.retrain import reward_model_promote

    for reward_model in queryset:
        if reward_model.status != RewardModel.Status.DONE:
            messages.error(request, f"#{reward_model.pk} is {reward_model.status}, not trained; not promoted.")
            continue
        try:
            reward_model_promote(reward_model=reward_model, user=request.user.get_username())
        except RewardModelError as exc:
            messages.error(request, f"#{reward_model.pk} not promoted: {exc}")
        else:
            messages.info(request, f"#{reward_model.pk} is now the model of study {reward_model.study}.")


@admin.register(RewardModel)
class RewardModelAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "study", "is_promoted", "parent", "status", "progress_bar", "progress_message",
                    "validation_summary", "n_ratings", "holdout", "promotion_summary", "created_at")
    list_filter = ("status", "holdout", "study")
    list_select_related = ("study", "parent")
    actions = [queue_training, promote]
    readonly_fields = ("status", "is_promoted", "progress_bar", "progress_message", "error", "checkpoint_path",
                       "data_hash", "promotion_pretty", "promoted_at", "metrics_pretty", "validation_group_ids",
                       "trained_group_ids", "training_rating_count", "created_at", "started_at", "heartbeat_at",
                       "finished_at")
    fields = ("study", "name", "config", "holdout", "parent") + readonly_fields

    def get_readonly_fields(self, request, obj=None):
        # What a version was trained with is part of its record: fixed once it has started.
        if obj is not None and obj.status != RewardModel.Status.QUEUED:
            return ("study", "config", "holdout", "parent") + self.readonly_fields
        return self.readonly_fields

    @admin.display(description="progress")
    def progress_bar(self, obj):
        return progress_bar_html(obj.progress)

    @admin.display(description="in use", boolean=True)
    def is_promoted(self, obj):
        return obj.study.reward_model_id == obj.pk

    @admin.display(description="validation")
    def validation_summary(self, obj):
        val = (obj.metrics or {}).get("validation") or {}
        if not val:
            return "–"
        return f"pairwise {val.get('pairwise_accuracy')}, ρ {val.get('spearman')}, MAE {val.get('mae')}"

    @admin.display(description="ratings (train + validation)")
    def n_ratings(self, obj):
        metrics = obj.metrics or {}
        if "n_train_ratings" not in metrics:
            return "–"
        return f"{metrics['n_train_ratings']} + {metrics.get('n_validation_ratings', 0)}"

    @admin.display(description="promotion")
    def promotion_summary(self, obj):
        decision = obj.promotion or {}
        if not decision:
            return "–"
        scores = ""
        if "new_score" in decision:
            scores = f" (this {decision.get('new_score')} vs #{decision.get('compared_with')} " \
                     f"{decision.get('current_score')})"
        return f"{'promoted' if decision.get('promoted') else 'not promoted'}: {decision.get('reason', '')}{scores}"

    @admin.display(description="promotion decision")
    def promotion_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.promotion, indent=2))

    @admin.display(description="metrics")
    def metrics_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.metrics, indent=2))

    @admin.display(description="training ratings")
    def training_rating_count(self, obj):
        return obj.training_ratings.count()


@admin.action(description="Queue fine-tuning of the selected generators (Celery; a finished one gets a new version)")
def queue_finetuning(modeladmin, request, queryset):
    from .generator.registry import (
        GeneratorModelError,
        generator_model_new_version,
        study_sft_rows,
        training_data_check,
    )
    from .generator.train import GeneratorConfig
    from .tasks import finetune_generator

    queued = []
    for version in queryset.select_related("study"):
        if version.status == GeneratorModel.Status.RUNNING:
            messages.warning(request, f"{version} (#{version.pk}) is training now; not queued again.")
            continue
        config = GeneratorConfig.from_dict(version.config)
        try:
            training_data_check(study=version.study, rows=study_sft_rows(
                study=version.study, min_quality=config.min_quality, winners_only=config.winners_only), config=config)
        except GeneratorModelError as exc:
            messages.error(request, f"#{version.pk}: {exc}")
            continue
        if version.status != GeneratorModel.Status.QUEUED:  # done or failed: its record and files are kept
            version = generator_model_new_version(generator_model=version)
        GeneratorModel.objects.filter(pk=version.pk).update(progress=0.0, progress_message="queued", error="")
        finetune_generator.delay_on_commit(generator_model_id=version.pk)
        queued.append(f"#{version.pk}")
    if queued:
        messages.info(request, f"Queued {', '.join(queued)}; progress updates here every few seconds.")


@admin.action(description="Serve the selected version in its study (embedded backend)")
def use_generator(modeladmin, request, queryset):
    from .generator.registry import GeneratorModelError, generator_model_use

    for version in queryset.select_related("study"):
        try:
            generator_model_use(study=version.study, generator_model=version)
        except GeneratorModelError as exc:
            messages.error(request, f"#{version.pk} not served: {exc}")
        else:
            messages.info(request, f"#{version.pk} now writes the statements of study {version.study}.")


@admin.register(GeneratorModel)
class GeneratorModelAdmin(admin.ModelAdmin):
    """Fine-tuned generator versions: data, validation loss before/after, parent; queue fine-tuning here."""

    list_display = ("id", "name", "study", "is_served", "parent", "status", "progress_bar", "progress_message",
                    "validation_summary", "n_examples", "created_at")
    list_filter = ("status", "study")
    list_select_related = ("study", "parent")
    actions = [queue_finetuning, use_generator]
    readonly_fields = ("status", "is_served", "progress_bar", "progress_message", "error", "base_model",
                       "checkpoint_path", "data_hash", "metrics_pretty", "validation_group_ids",
                       "training_candidate_ids", "created_at", "started_at", "finished_at")
    fields = ("study", "name", "config", "parent") + readonly_fields

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status != GeneratorModel.Status.QUEUED:
            return ("study", "config", "parent") + self.readonly_fields
        return self.readonly_fields

    def get_changeform_initial_data(self, request):
        from .generator.train import GeneratorConfig

        return {"config": GeneratorConfig().to_dict(), **super().get_changeform_initial_data(request)}

    @admin.display(description="progress")
    def progress_bar(self, obj):
        return progress_bar_html(obj.progress)

    @admin.display(description="served", boolean=True)
    def is_served(self, obj):
        return obj.study.generator_model_id == obj.pk

    @admin.display(description="validation loss (before → after)")
    def validation_summary(self, obj):
        metrics = obj.metrics or {}
        if "validation_loss" not in metrics:
            return "–"
        return f"{metrics['validation_loss_before']:.3f} → {metrics['validation_loss']:.3f}"

    @admin.display(description="examples (train + validation)")
    def n_examples(self, obj):
        metrics = obj.metrics or {}
        if "n_train" not in metrics:
            return "–"
        return f"{metrics['n_train']} + {metrics.get('n_validation', 0)}"

    @admin.display(description="metrics")
    def metrics_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.metrics, indent=2))


@admin.register(RewardRetraining)
class RewardRetrainingAdmin(admin.ModelAdmin):
    """Read-only: retraining is switched on per study (Study → 'retrain every K groups')."""

    list_display = ("study", "pending", "running_version", "runs", "finished_groups_at_last_run", "last_message",
                    "updated_at")
    readonly_fields = list_display

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AnalysisJob)
class AnalysisJobAdmin(admin.ModelAdmin):
    """Read-only: jobs are started from the command line (e.g. ``manage.py loo_offline``)."""

    list_display = ("id", "kind", "study", "status", "progress_bar", "done", "total", "progress_message",
                    "created_at", "finished_at")
    list_filter = ("kind", "status", "study")
    readonly_fields = ("kind", "study", "params", "status", "progress_bar", "done", "total", "progress_message",
                       "result_pretty", "error", "created_at", "started_at", "finished_at")
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="progress")
    def progress_bar(self, obj):
        return progress_bar_html(obj.progress)

    @admin.display(description="result")
    def result_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.result, indent=2))
