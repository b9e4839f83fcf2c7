"""One-line helpers for the common cases: a study, joined participants, a formed group."""
from __future__ import annotations

import secrets

from django.utils import timezone

from deliberation.lobby import lobby_match
from deliberation.models import Question, Study
from participants.models import Participant, Presence
from participants.services import participant_consent, participant_join


def make_study(slug: str = "demo", **fields) -> Study:
    defaults = dict(title="Test study", min_group_size=3, max_group_size=3, num_candidates=2,
                    generation_backend="extractive", completion_code_completed="DONE123",
                    completion_code_lobby_timeout="LOBBY9", completion_code_dropped="DROP7")
    defaults.update(fields)
    study = Study.objects.create(slug=slug, **defaults)
    question, _ = Question.objects.get_or_create(
        text="Should we remove all taxes on food and groceries?",
        defaults={"affirming_statement": "We should remove all taxes on food and groceries.",
                  "negating_statement": "We should NOT remove all taxes on food and groceries."})
    study.questions.add(question)
    return study


def connect(participant: Participant, channel: str | None = None) -> Presence:
    return Presence.objects.create(participant=participant, channel_name=channel or f"test.{participant.pk}",
                                   last_seen=timezone.now())


def join(study: Study, pid: str | None = None, *, consent: bool = True, connected: bool = True) -> Participant:
    participant = participant_join(study=study, params={"PROLIFIC_PID": pid} if pid else {})
    if connected:
        connect(participant)
    if consent:
        participant_consent(participant=participant)
    participant.refresh_from_db()
    return participant


def make_group(study: Study | None = None, n: int = 3):
    study = study or make_study(max_group_size=n, min_group_size=min(n, 3))
    members = [join(study, f"pid-{secrets.token_hex(4)}") for _ in range(n)]
    groups = lobby_match(study_id=study.pk)
    for m in members:
        m.refresh_from_db()
    return (groups[0] if groups else members[0].group), members
