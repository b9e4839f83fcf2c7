from django.apps import AppConfig


class DeliberationConfig(AppConfig):
    name = "deliberation"
    verbose_name = "Deliberation studies"

    def ready(self) -> None:
        from . import (
            lobby,  # noqa: F401 (connects the receivers of participants.signals)
            withdrawal,  # noqa: F401 (participants.signals.participant_withdrawn)
        )
