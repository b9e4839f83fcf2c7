from django.contrib import admin
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse

from core.admin import ReadOnlyAdmin, export_csv, export_csv_with_recruitment_ids

from .models import (
    ConsentVersion,
    Participant,
    ParticipantEvent,
    Presence,
    QuestionnaireAnswer,
    QuestionnaireItem,
    ScreeningAnswer,
    ScreeningQuestion,
)
from .questionnaire import questionnaire_add_demographics
from .services import relink


class RelinkMixin:
    """Admin action for a genuine change of device: a new private link (``participants.services.relink``), after a
    confirmation page. Needs the model's ``relink_<model>`` permission; every re-link is in the admin's history."""

    relink_url_name = ""  # the row's own page, reversed with its token

    def has_relink_permission(self, request) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.relink_{opts.model_name}")

    @admin.action(description="Re-link to a new device (new private link; the old browser loses access)",
                  permissions=["relink"])
    def relink(self, request, queryset):
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": "Re-link to a new device"}
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(request, "admin/participants/relink_confirm.html", {
                **context, "rows": list(queryset), "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME})
        links = []
        for row in queryset:
            row = relink(row)
            self.log_change(request, row, "Re-linked to a new device: new private link issued, the old one no "
                                          "longer works.")
            links.append((row, request.build_absolute_uri(reverse(self.relink_url_name, kwargs={"token": row.token}))))
        return TemplateResponse(request, "admin/participants/relink_done.html", {**context, "links": links})


@admin.register(Participant)
class ParticipantAdmin(RelinkMixin, ReadOnlyAdmin):
    list_display = ("id", "study", "recruitment_id", "status", "group", "position", "consented_at", "consent_version",
                    "completion_code", "taken_over_at", "is_simulated")
    list_filter = ("study", "status", ("taken_over_at", admin.EmptyFieldListFilter), "is_simulated")
    search_fields = ("recruitment_id", "recruitment_session_id")
    exclude = ("token",)
    actions = [export_csv, export_csv_with_recruitment_ids, "relink"]
    relink_url_name = "participant_page"


@admin.register(ConsentVersion)
class ConsentVersionAdmin(ReadOnlyAdmin):
    """Every wording participants were shown; read-only (a participant's consent_version names one)."""

    list_display = ("study", "version", "sha256", "created_at")
    list_filter = ("study",)


@admin.register(Presence)
class PresenceAdmin(ReadOnlyAdmin):
    list_display = ("participant", "channel_name", "connected_at", "last_seen")


# --- screening and questionnaire: inlines on the study admin (deliberation.admin.StudyAdmin) ----------------
class ScreeningQuestionInline(admin.TabularInline):
    """Comprehension or attention checks shown before the lobby; ``ScreeningQuestion.clean`` refuses a question
    whose correct answer is not one of its options."""

    model = ScreeningQuestion
    extra = 0
    fields = ("order", "text", "options", "correct_option", "attempts_allowed")


class QuestionnaireItemInline(admin.TabularInline):
    model = QuestionnaireItem
    extra = 0
    fields = ("order", "key", "text", "kind", "options", "scale_points", "min_value", "max_value", "required")


@admin.action(description="Add the demographics questionnaire items (age band, gender, education, country)")
def add_demographics(modeladmin, request, queryset):
    for study in queryset:
        added = questionnaire_add_demographics(study=study)
        modeladmin.message_user(request, f"{study}: {added} demographics item{'s' if added != 1 else ''} added.")


@admin.register(ScreeningAnswer)
class ScreeningAnswerAdmin(ReadOnlyAdmin):
    list_display = ("participant", "question", "attempt", "answer", "correct", "answered_at")
    list_filter = ("question__study", "correct")


@admin.register(QuestionnaireAnswer)
class QuestionnaireAnswerAdmin(ReadOnlyAdmin):
    list_display = ("participant", "item", "value", "answered_at")
    list_filter = ("item__study",)


@admin.register(ParticipantEvent)
class ParticipantEventAdmin(ReadOnlyAdmin):
    """Screening outcomes, questionnaires and withdrawals; append-only."""

    list_display = ("participant", "kind", "payload", "created_at")
    list_filter = ("kind", "participant__study")
