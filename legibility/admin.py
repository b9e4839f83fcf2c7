"""Legibility studies in the admin: problems, solutions by round / role / correctness, verifiers with live
progress and metrics, judges with accuracy and the chance-level flag for exclusion."""
from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import Max
from django.urls import reverse
from django.utils.html import format_html

from core.admin import export_csv, export_csv_with_recruitment_ids
from participants.admin import RelinkMixin

from .models import JudgeConsentVersion, JudgeItem, JudgeSession, LegibilityStudy, Problem, Solution, Verifier
from .services import session_stats


@admin.action(description="Train the next round's verifier (Celery)", permissions=["change"])
def queue_next_round(modeladmin, request, queryset):
    from .rounds import verifier_create
    from .tasks import train_verifier_round

    for study in queryset:
        last = study.verifiers.aggregate(last=Max("round"))["last"] or 0
        verifier = verifier_create(study=study, round_=last + 1)
        train_verifier_round.delay_on_commit(verifier_id=verifier.pk)
    messages.info(request, f"Queued {queryset.count()} verifier(s); progress updates under Verifiers.")


@admin.register(LegibilityStudy)
class LegibilityStudyAdmin(admin.ModelAdmin):
    list_display = ("slug", "title", "is_active", "seconds_per_item", "items_per_session", "problem_count",
                    "judge_count", "report_link")
    prepopulated_fields = {"slug": ("title",)}
    actions = [queue_next_round]

    @admin.display(description="problems")
    def problem_count(self, obj):
        return obj.problems.count()

    @admin.display(description="judges")
    def judge_count(self, obj):
        return obj.sessions.count()

    @admin.display(description="report")
    def report_link(self, obj):
        return format_html('<a href="{}">report</a>', reverse("legibility:report", kwargs={"slug": obj.slug}))


class GroundTruthAdmin(admin.ModelAdmin):
    """Ground truth is evidence: once stored, the fields in ``ground_truth`` (and the text they describe) are
    read-only and rows are not deleted from the admin; importing and grading write them."""

    ground_truth: tuple[str, ...] = ()

    def get_readonly_fields(self, request, obj=None):
        readonly = tuple(super().get_readonly_fields(request, obj))
        return readonly + self.ground_truth if obj is not None else readonly

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Problem)
class ProblemAdmin(GroundTruthAdmin):
    list_display = ("id", "study", "split", "index", "half", "reference_answer", "short_text")
    list_filter = ("study", "split", "half")
    search_fields = ("text",)
    ground_truth = ("study", "split", "index", "half", "text", "reference_solution", "reference_answer",
                    "numeric_answer")

    @admin.display(description="text")
    def short_text(self, obj):
        return obj.text[:100]


@admin.register(Solution)
class SolutionAdmin(GroundTruthAdmin):
    list_display = ("id", "problem", "source", "role", "round", "correct", "is_gold", "final_answer", "external_key")
    list_filter = ("round", "role", "correct", "source", "is_gold", "problem__half", "problem__study")
    search_fields = ("text", "problem__text")
    raw_id_fields = ("problem",)
    ground_truth = ("problem", "text", "source", "role", "round", "correct", "final_answer", "dataset_label",
                    "is_gold", "external_key", "provenance")


@admin.register(Verifier)
class VerifierAdmin(admin.ModelAdmin):
    list_display = ("id", "study", "round", "status", "progress_bar", "progress_message", "heldout_summary",
                    "created_at")
    list_filter = ("status", "study", "round")
    readonly_fields = ("status", "progress_bar", "progress_message", "path", "metrics_pretty", "n_train",
                       "n_heldout", "train_problems", "error", "created_at", "finished_at")
    fields = ("study", "round", "config") + readonly_fields

    @admin.display(description="trained on problems")
    def train_problems(self, obj):
        return f"{len(obj.train_problem_hashes or [])} (hashes kept; evaluate_verifier drops them)"

    @admin.display(description="progress")
    def progress_bar(self, obj):
        return format_html('<progress value="{}" max="100"></progress> {}%', round(obj.progress * 100),
                           round(obj.progress * 100))

    @admin.display(description="held out")
    def heldout_summary(self, obj):
        held = (obj.metrics or {}).get("heldout") or {}
        if not held:
            return "–"
        parts = [f"{key} {held[key]:.3f}" for key in ("auc", "balanced_best_of_4", "attack_success_rate")
                 if isinstance(held.get(key), float)]
        return ", ".join(parts) or "–"

    @admin.display(description="metrics")
    def metrics_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.metrics, indent=2))


@admin.register(JudgeConsentVersion)
class JudgeConsentVersionAdmin(admin.ModelAdmin):
    """Every wording judges were shown; read-only (a judge's consent_version names one)."""

    list_display = ("study", "version", "sha256", "created_at")
    list_filter = ("study",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class JudgeItemInline(admin.TabularInline):
    model = JudgeItem
    extra = 0
    can_delete = False
    fields = ("position", "solution", "is_gold", "started_at", "deadline", "answer", "timed_out", "response_ms")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(JudgeSession)
class JudgeSessionAdmin(RelinkMixin, admin.ModelAdmin):
    list_display = ("id", "recruitment_id", "study", "status", "outcome", "consent_version", "accuracy",
                    "gold_accuracy", "timeouts", "median_seconds", "chance_flag", "created_at")
    list_filter = ("study", "status", "outcome")
    search_fields = ("recruitment_id",)
    readonly_fields = ("token", "url_params", "user_agent", "consented_at", "consent_version", "consent_sha256",
                       "finished_at", "outcome", "completion_code", "accuracy", "gold_accuracy", "timeouts",
                       "median_seconds", "chance_flag")
    inlines = [JudgeItemInline]
    actions = [export_csv, export_csv_with_recruitment_ids, "relink"]
    relink_url_name = "legibility:judge"

    def has_delete_permission(self, request, obj=None):
        return False  # a judge's session holds their answers (its items): evidence

    def _stats(self, obj):
        # One computation per row and request, shared by the columns below.
        cache = getattr(self, "_stats_cache", None)
        if cache is None or cache[0] is not obj:
            self._stats_cache = (obj, session_stats(obj))
        return self._stats_cache[1]

    @admin.display(description="accuracy")
    def accuracy(self, obj):
        s = self._stats(obj)
        return f"{s.accuracy:.2f} ({s.n_right}/{s.n_answered})" if s.accuracy is not None else "–"

    @admin.display(description="gold accuracy")
    def gold_accuracy(self, obj):
        s = self._stats(obj)
        return f"{s.gold_accuracy:.2f} ({s.gold_right}/{s.gold_answered})" if s.gold_accuracy is not None else "–"

    @admin.display(description="timeouts")
    def timeouts(self, obj):
        return self._stats(obj).n_timed_out

    @admin.display(description="median s")
    def median_seconds(self, obj):
        ms = self._stats(obj).median_response_ms
        return f"{ms / 1000:.1f}" if ms is not None else "–"

    @admin.display(description="at chance (exclude)", boolean=True)
    def chance_flag(self, obj):
        return self._stats(obj).flagged
