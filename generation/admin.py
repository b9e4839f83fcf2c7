from django.contrib import admin
from django.db.models import Max

from core.admin import CsvExportAdmin

from .models import PromptTemplate


@admin.register(PromptTemplate)
class PromptTemplateAdmin(CsvExportAdmin):
    list_display = ("kind", "version", "response_prefix", "created_by", "created_at")
    list_filter = ("kind",)
    readonly_fields = ("version", "created_by", "created_at")

    def save_model(self, request, obj, form, change):
        """Saving never overwrites a version that candidates may point at: it adds the next version."""
        latest = PromptTemplate.objects.filter(kind=obj.kind).aggregate(v=Max("version"))["v"] or 0
        obj.pk = None
        obj.version = latest + 1
        obj.created_by = request.user.get_username()
        obj.save()
        self.message_user(request, f"Saved as {obj}.")
