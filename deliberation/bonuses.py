"""A study's bonuses: the database facts ``core.bonuses`` computes from (``manage.py bonus_csv`` and the admin
action both read through ``study_bonus_file``)."""
from __future__ import annotations

from django.db.models import Count

from core.bonuses import BonusFacts, BonusFile, BonusRules, bonus_lines
from participants.models import Participant

from .models import Critique, Opinion, Rating, Study


def study_bonus_rules(study: Study) -> BonusRules:
    return BonusRules(per_completion=study.bonus_per_completion, per_lobby_minute=study.bonus_per_lobby_minute,
                      per_phase=study.bonus_per_phase)


def study_bonus_facts(study: Study) -> list[BonusFacts]:
    """One row per human participant who consented. A phase counts as completed when the member answered it
    themselves before the deadline (not stored from a draft at the time-out, not written by a take-over bot)."""
    own = {"by_timeout": False, "by_bot": False}
    phases: dict[int, int] = {}
    for model in (Opinion, Critique):
        for pid in model.objects.filter(group__study=study, **own).values_list("participant_id", flat=True):
            phases[pid] = phases.get(pid, 0) + 1
    rounds = (Rating.objects.filter(group__study=study, **own).values("participant_id")
              .annotate(n=Count("round", distinct=True)))
    for row in rounds:
        phases[row["participant_id"]] = phases.get(row["participant_id"], 0) + row["n"]
    rows = (Participant.objects.human().filter(study=study).exclude(status=Participant.Status.JOINED)
            .select_related("group").order_by("id"))
    facts = []
    for p in rows:
        left = p.group.created_at if p.group_id else (
            p.finished_at if p.status == Participant.Status.LOBBY_TIMEOUT else None)
        facts.append(BonusFacts(recruitment_id=p.recruitment_id, completed=p.status == Participant.Status.COMPLETED,
                                lobby_entered_at=p.lobby_entered_at, lobby_left_at=left,
                                phases_completed=phases.get(p.pk, 0)))
    return facts


def study_bonus_file(study: Study) -> BonusFile:
    return bonus_lines(study_bonus_rules(study), study_bonus_facts(study))
