"""Admin base classes every app's admin uses: the CSV export action and read-only evidence."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpResponse

from .csv_export import write_csv


@admin.action(description="Export selected rows as CSV")
def export_csv(modeladmin, request, queryset):
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{queryset.model._meta.model_name}.csv"'
    write_csv(queryset, response, exclude=("token",))
    return response


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
