"""Reward model registry and analysis jobs in the admin: status, live progress, results; queue training here."""
from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils.html import format_html

from .models import AnalysisJob, RewardModel


def progress_bar_html(progress: float):
    """The admin's progress bar for anything with a 0..1 ``progress`` (training, analysis jobs)."""
    return format_html('<progress value="{}" max="100"></progress> {}%', round(progress * 100), round(progress * 100))


@admin.action(description="Queue training of the selected models (Celery)")
def queue_training(modeladmin, request, queryset):
    from .tasks import train_reward_model

    for reward_model in queryset:
        RewardModel.objects.filter(pk=reward_model.pk).update(status=RewardModel.Status.QUEUED, progress=0.0,
                                                              progress_message="queued", error="")
        train_reward_model.delay_on_commit(reward_model_id=reward_model.pk)
    messages.info(request, f"Queued {queryset.count()} model(s); progress updates here every few seconds.")


@admin.register(RewardModel)
class RewardModelAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "study", "status", "progress_bar", "progress_message", "validation_summary",
                    "created_at")
    list_filter = ("status", "study")
    actions = [queue_training]
    readonly_fields = ("status", "progress_bar", "progress_message", "error", "checkpoint_path", "data_hash",
                       "metrics_pretty", "validation_group_ids", "training_rating_count", "created_at",
                       "started_at", "finished_at")
    fields = ("study", "name", "config") + readonly_fields

    @admin.display(description="progress")
    def progress_bar(self, obj):
        return progress_bar_html(obj.progress)

    @admin.display(description="validation")
    def validation_summary(self, obj):
        val = (obj.metrics or {}).get("validation") or {}
        if not val:
            return "–"
        return f"pairwise {val.get('pairwise_accuracy')}, ρ {val.get('spearman')}, MAE {val.get('mae')}"

    @admin.display(description="metrics")
    def metrics_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.metrics, indent=2))

    @admin.display(description="training ratings")
    def training_rating_count(self, obj):
        return obj.training_ratings.count()


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
