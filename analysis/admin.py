"""Reward model registry in the admin: status, live progress, metrics; queue training from here."""
from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils.html import format_html

from .models import RewardModel


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
        return format_html('<progress value="{}" max="100"></progress> {}%', round(obj.progress * 100),
                           round(obj.progress * 100))

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
