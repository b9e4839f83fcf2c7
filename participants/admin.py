from django.contrib import admin

from deliberation.admin import ReadOnlyAdmin

from .models import Participant, Presence


@admin.register(Participant)
class ParticipantAdmin(ReadOnlyAdmin):
    list_display = ("id", "study", "recruitment_id", "status", "group", "position", "consented_at", "completion_code")
    list_filter = ("study", "status")
    search_fields = ("recruitment_id", "recruitment_session_id")
    exclude = ("token",)


@admin.register(Presence)
class PresenceAdmin(ReadOnlyAdmin):
    list_display = ("participant", "channel_name", "connected_at", "last_seen")
