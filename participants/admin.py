from django.contrib import admin

from core.admin import ReadOnlyAdmin

from .models import Participant, Presence


@admin.register(Participant)
class ParticipantAdmin(ReadOnlyAdmin):
    list_display = ("id", "study", "recruitment_id", "status", "group", "position", "consented_at", "completion_code",
                    "taken_over_at", "is_simulated")
    list_filter = ("study", "status", ("taken_over_at", admin.EmptyFieldListFilter), "is_simulated")
    search_fields = ("recruitment_id", "recruitment_session_id")
    exclude = ("token",)


@admin.register(Presence)
class PresenceAdmin(ReadOnlyAdmin):
    list_display = ("participant", "channel_name", "connected_at", "last_seen")
