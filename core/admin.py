"""Admin base classes every app's admin uses: the CSV export actions and read-only evidence."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpResponse

from .csv_export import write_csv


def _csv_response(queryset, *, include_recruitment_ids: bool) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    name = queryset.model._meta.model_name + ("-with-recruitment-ids" if include_recruitment_ids else "")
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    write_csv(queryset, response, exclude=("token",), include_recruitment_ids=include_recruitment_ids)
    return response


@admin.action(description="Export selected rows as CSV")
def export_csv(modeladmin, request, queryset):
    """Without recruitment ids (PROLIFIC_PID, STUDY_ID, SESSION_ID) and the join link's parameters."""
    return _csv_response(queryset, include_recruitment_ids=False)


@admin.action(description="Export selected rows as CSV, with recruitment ids (Prolific PID, study, session) and "
                          "link parameters")
def export_csv_with_recruitment_ids(modeladmin, request, queryset):
    """The explicit option, on the admins of recruited people (participants, legibility judges) only."""
    return _csv_response(queryset, include_recruitment_ids=True)


class CsvExportAdmin(admin.ModelAdmin):
    actions = [export_csv]


class ReadOnlyAdmin(CsvExportAdmin):
    """Collected data is evidence: viewable and exportable, never edited or deleted by hand (not even by a
    superuser: a withdrawal is a deliberate, recorded database operation, not an admin click)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
