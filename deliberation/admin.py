"""Experimenter admin: studies, questions (with file import), groups and everything collected."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.html import format_html

from core.admin import CsvExportAdmin, ReadOnlyAdmin
from core.bonuses import BonusRuleError
from participants.admin import QuestionnaireItemInline, ScreeningQuestionInline, add_demographics

from .bonuses import study_bonus_file
from .models import Candidate, Critique, Draft, Group, GroupEvent, Opinion, Question, Rating, Study, StudyArm
from .question_import import ImportFormatError, parse_questions, questions_import


def _done_generator_versions(db_field, request):
    """Only finished generator versions can be served (the model's clean checks it too); a study's own versions
    when editing. The model is analysis's (above deliberation): reached through the foreign key, not imported."""
    versions = db_field.related_model.objects.filter(status="done")
    study_id = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
    return versions.filter(study_id=study_id) if study_id else versions.none()


class StudyArmFormSet(forms.BaseInlineFormSet):
    """At least one arm. (An arm that has groups cannot be deleted: the admin refuses it, the groups PROTECT it.)"""

    def _construct_form(self, i, **kwargs):
        form = super()._construct_form(i, **kwargs)
        form.instance.study = self.instance  # StudyArm.clean checks the arm against the study being saved
        return form

    def clean(self):
        super().clean()
        if not [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]:
            raise ValidationError("A study needs at least one arm: add one (its generation settings are what the "
                                  "groups run with).")


class StudyArmInline(admin.StackedInline):
    model = StudyArm
    formset = StudyArmFormSet
    extra = 0
    min_num = 1
    fieldsets = (
        (None, {"fields": (("name", "weight"), ("max_groups", "max_participants"))}),
        ("Generation", {"fields": ("generation_backend", "generator_model", "generation_base_url",
                                   "generation_model", "generation_params", "consensus_template",
                                   "revision_template")}),
        ("Deliberation", {"fields": ("critique_round", "opinions_as_candidates", "leave_one_out_share",
                                      "best_of_n", "reward_model")}),
    )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "generator_model":
            kwargs["queryset"] = _done_generator_versions(db_field, request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.action(description="Download the Prolific bonus file (one study)")
def download_bonus_file(modeladmin, request, queryset):
    """The same file as ``manage.py bonus_csv``: no header, PROLIFIC_PID,amount per line."""
    if not request.user.has_perm("participants.view_participant"):
        modeladmin.message_user(request, "The bonus file lists Prolific ids: it needs the permission to view "
                                         "participants.", messages.ERROR)
        return None
    if queryset.count() != 1:
        modeladmin.message_user(request, "Select exactly one study for its bonus file.", messages.ERROR)
        return None
    study = queryset.get()
    try:
        bonus = study_bonus_file(study)
    except BonusRuleError as exc:
        modeladmin.message_user(request, f"{study.slug}: invalid bonus rule: {exc}", messages.ERROR)
        return None
    response = HttpResponse(bonus.csv_text(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="bonus-{study.slug}.csv"'
    response["X-Bonus-Skipped-Without-Prolific-Id"] = str(bonus.skipped_without_id)
    return response


@admin.register(Study)
class StudyAdmin(CsvExportAdmin):
    list_display = ("title", "slug", "is_active", "paused_at", "group_sizes", "num_candidates", "arm_names",
                    "links")
    prepopulated_fields = {"slug": ("title",)}
    filter_horizontal = ("questions",)
    inlines = [StudyArmInline, ScreeningQuestionInline, QuestionnaireItemInline]
    actions = [*CsvExportAdmin.actions, download_bonus_file, add_demographics]
    readonly_fields = ("closed_reason", "paused_at")
    # The settings an arm holds (models.ARM_SETTINGS) are edited on the arms below, not here; the study keeps
    # its reward model and generator versions, which arms that name none use (retraining promotes into them).
    fieldsets = (
        (None, {"fields": ("title", "slug", "language", "is_active", "closed_reason", "paused_at", "consent_text",
                           "questions", "questions_from_train_split")}),
        ("Groups and timing", {"fields": ("min_group_size", "max_group_size", "lobby_timeout_seconds",
                                          "opinion_seconds", "rating_seconds", "critique_seconds",
                                          "final_rating_seconds", "max_text_chars")}),
        ("Quotas and caps", {"fields": ("max_participants", "max_groups")}),
        ("Deliberation", {"fields": ("num_candidates", "aggregation_method", "bot_takeover")}),
        ("Reward model (best-of-N is set per arm)", {"fields": ("reward_model", "reward_retrain_every",
                                                               "reward_retrain_config", "welfare_method",
                                                               "welfare_alpha")}),
        ("Generation (study-wide; backend, model and templates are set per arm)", {
            "fields": ("generator_model", "generation_api_key_env", "generation_concurrency",
                       "generation_timeout_seconds", "generation_seed")}),
        ("Completion codes", {"fields": ("completion_code_completed", "completion_code_lobby_timeout",
                                         "completion_code_dropped", "completion_code_screened_out",
                                         "prolific_redirect")}),
        ("Bonuses (Prolific bulk bonus)", {"fields": ("bonus_per_completion", "bonus_per_lobby_minute",
                                                      "bonus_per_phase")}),
        ("Withdrawal", {"fields": ("withdrawal_policy",)}),
    )

    def save_model(self, request, obj, form, change):
        if obj.is_active and "is_active" in form.changed_data:
            obj.closed_reason = ""  # opened again by hand: the cap message no longer applies
        if change and "reward_model" not in form.changed_data:
            # Retraining may have promoted a new version while this form was open: saving other settings keeps it.
            obj.reward_model_id = Study.objects.filter(pk=obj.pk).values_list("reward_model_id", flat=True).first()
        if change and "generator_model" not in form.changed_data:
            # The generator admin's "serve" action may have changed it while this form was open.
            obj.generator_model_id = Study.objects.filter(pk=obj.pk).values_list("generator_model_id",
                                                                                 flat=True).first()
        super().save_model(request, obj, form, change)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "generator_model":
            kwargs["queryset"] = _done_generator_versions(db_field, request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="arms")
    def arm_names(self, obj):
        return ", ".join(f"{arm.name} ×{arm.weight}" for arm in obj.arms.all())

    @admin.display(description="group size")
    def group_sizes(self, obj):
        return f"{obj.min_group_size}–{obj.max_group_size}"

    @admin.display(description="links")
    def links(self, obj):
        return format_html('<a href="{}">join link</a> · <a href="{}">monitor</a> · <a href="{}">report</a>',
                           reverse("join", kwargs={"slug": obj.slug}), reverse("monitor_study", args=[obj.pk]),
                           reverse("analysis:study_report", kwargs={"slug": obj.slug}))


class QuestionImportForm(forms.Form):
    file = forms.FileField(help_text="JSON (e.g. the Habermas question file) or CSV with a 'question' column.")
    study = forms.ModelChoiceField(Study.objects.all(), required=False, help_text="Attach the questions to a study.")
    split = forms.ChoiceField(choices=[("", "all"), ("train", "train"), ("iid_test", "iid_test"),
                                       ("ood_test", "ood_test")], required=False)
    limit = forms.IntegerField(required=False, min_value=1)


@admin.register(Question)
class QuestionAdmin(CsvExportAdmin):
    list_display = ("text", "topic", "split", "subtopic", "subtopic_split", "external_id")
    list_filter = ("split", "subtopic_split", "source")
    search_fields = ("text", "external_id")
    change_list_template = "admin/deliberation/question/change_list.html"

    def get_urls(self):
        return [path("import/", self.admin_site.admin_view(self.import_view), name="deliberation_question_import"),
                *super().get_urls()]

    def import_view(self, request):
        if not request.user.has_perm("deliberation.add_question"):
            raise PermissionDenied
        form = QuestionImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                rows = parse_questions(upload.read().decode("utf-8"), filename=upload.name)
                report = questions_import(rows, source=upload.name, study=form.cleaned_data["study"],
                                          split=form.cleaned_data["split"] or None, limit=form.cleaned_data["limit"])
            except (ImportFormatError, UnicodeDecodeError) as exc:
                form.add_error("file", str(exc))
            else:
                self.message_user(request, f"Imported {upload.name}: {report.created} created, {report.updated} "
                                           f"updated, {report.skipped} skipped.", messages.SUCCESS)
                return redirect("admin:deliberation_question_changelist")
        return render(request, "admin/deliberation/question/import.html",
                      {**self.admin_site.each_context(request), "form": form, "title": "Import questions",
                       "opts": self.model._meta})


class EventInline(admin.TabularInline):
    model = GroupEvent
    extra = 0
    can_delete = False
    readonly_fields = ("created_at", "kind", "participant", "payload")
    fields = readonly_fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Group)
class GroupAdmin(ReadOnlyAdmin):
    list_display = ("id", "study", "arm", "phase", "condition", "excluded_participant", "deadline", "outcome",
                    "generation_status", "created_at")
    list_filter = ("study", "arm", "phase", "outcome", "condition")
    inlines = [EventInline]


@admin.register(Opinion)
class OpinionAdmin(ReadOnlyAdmin):
    list_display = ("id", "group", "participant", "by_timeout", "by_bot", "response_seconds", "text")
    list_filter = ("group__study", "by_timeout", "by_bot", "participant__is_simulated")


@admin.register(Candidate)
class CandidateAdmin(ReadOnlyAdmin):
    list_display = ("id", "group", "round", "index", "backend", "latency_ms", "text")
    list_filter = ("group__study", "round", "backend")


@admin.register(Rating)
class RatingAdmin(ReadOnlyAdmin):
    list_display = ("id", "group", "participant", "candidate", "round", "agreement", "quality", "rank", "by_timeout",
                    "by_bot")
    list_filter = ("group__study", "round", "by_timeout", "by_bot", "participant__is_simulated")


@admin.register(Critique)
class CritiqueAdmin(ReadOnlyAdmin):
    list_display = ("id", "group", "participant", "by_timeout", "by_bot", "text")
    list_filter = ("group__study", "by_timeout", "by_bot", "participant__is_simulated")


@admin.register(GroupEvent)
class GroupEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "group", "kind", "participant", "created_at")
    list_filter = ("kind",)


@admin.register(Draft)
class DraftAdmin(ReadOnlyAdmin):
    list_display = ("id", "group", "participant", "phase", "updated_at")
