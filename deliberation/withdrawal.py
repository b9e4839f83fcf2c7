"""A participant withdrew (``participants.withdrawal``): their texts per the study's policy, their group goes on.

Receives ``participants.signals.participant_withdrawn`` inside the withdrawal's transaction. Policy ``blank``
empties their opinions, critiques and drafts, the statements that showed their opinion, and their opinion's
text inside the stored prompts of model-written statements; ``anonymise`` keeps the texts (the participant row
has already lost its recruitment ids). Ratings are numbers and stay.

The group part runs after the commit, in its own transaction that locks the group first, like every other
group write (no lock-order inversion with ``group_finish``): a ``member_withdrawn`` group event, then in a
bot-takeover study during an input phase the bot answers in their seat (``taken_over_at``; the sweeper's
``takeover_sweep`` does it), else the group continues with fewer members: they have no socket, so the state
machine (``core.flow``) no longer waits for them. If the process dies between the two, the group still
continues at its deadline.
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.dispatch import receiver

from core import flow
from participants.models import Participant
from participants.signals import participant_withdrawn

from . import realtime
from .models import Candidate, Critique, Draft, Group, Opinion, Study
from .services import group_apply, log_event

logger = logging.getLogger(__name__)
WITHDRAWN_TEXT = "[withdrawn]"


def _scrub(value, needle: str):
    if isinstance(value, str):
        return value.replace(needle, WITHDRAWN_TEXT)
    if isinstance(value, list):
        return [_scrub(v, needle) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, needle) for k, v in value.items()}
    return value


def withdrawal_blank_texts(*, participant_id: int) -> int:
    """Empty everything this participant wrote; returns how many rows changed."""
    changed = 0
    for opinion in Opinion.objects.filter(participant_id=participant_id).exclude(text=""):
        for candidate in Candidate.objects.filter(included_opinions=opinion):
            candidate.prompt = _scrub(candidate.prompt, opinion.text)
            candidate.save(update_fields=["prompt"])
            changed += 1
    changed += Candidate.objects.filter(source_opinion__participant_id=participant_id).update(text="", raw_text="")
    changed += Opinion.objects.filter(participant_id=participant_id).update(text="")
    changed += Critique.objects.filter(participant_id=participant_id).update(text="")
    changed += Draft.objects.filter(participant_id=participant_id).update(payload={})
    return changed


def withdrawal_continue_group(*, group_id: int, participant_id: int, policy: str, now: datetime) -> None:
    """Record the withdrawal in the group's log and let the group go on without (or with a bot for) them."""
    with transaction.atomic():
        group = Group.objects.select_for_update().select_related("study").get(pk=group_id)
        participant = Participant.objects.get(pk=participant_id)
        takeover = group.study.bot_takeover and flow.Phase(group.phase) in flow.INPUT_PHASES
        log_event(group, "member_withdrawn", participant, phase=group.phase, policy=policy,
                  continues="bot_takeover" if takeover else "fewer_members")
        if takeover and participant.taken_over_at is None:
            Participant.objects.filter(pk=participant_id).update(taken_over_at=now)
        realtime.push_after_commit(groups=[group.pk], participants=[participant_id])
    if group.finished_at is None:
        group_apply(group_id=group_id, event=flow.PresenceChanged())


@receiver(participant_withdrawn, dispatch_uid="deliberation.withdrawal.on_participant_withdrawn")
def on_participant_withdrawn(sender, *, participant: Participant, previous_status: str, policy: str,
                             now: datetime, **kwargs) -> None:
    if policy == Study.WithdrawalPolicy.BLANK:
        withdrawal_blank_texts(participant_id=participant.pk)
    realtime.push_after_commit(participants=[participant.pk],
                               lobbies=[participant.study_id] if previous_status == Participant.Status.LOBBY else [])
    if participant.group_id is None or previous_status != Participant.Status.IN_GROUP:
        return
    group_id, participant_id = participant.group_id, participant.pk

    def continue_group() -> None:
        try:
            withdrawal_continue_group(group_id=group_id, participant_id=participant_id, policy=policy, now=now)
        except Exception:  # the withdrawal itself is stored; the deadline moves the group on regardless
            logger.exception("withdrawal of participant %s: group %s not updated", participant_id, group_id)

    transaction.on_commit(continue_group)
