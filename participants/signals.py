"""What the participants app announces; deliberation, above it, listens (docs/architecture.md).

Participants knows people, links and sockets, not groups: when someone enters a study's lobby or their
presence changes, it sends one of these and ``deliberation.lobby`` forms groups or moves a group on.
Receivers run synchronously in the sender's thread, so a failure still reaches the caller.
"""
from django.dispatch import Signal

# Sent after the consent committed, with ``participant`` (status LOBBY) and ``now``.
lobby_entered = Signal()
# Sent after a websocket of ``participant`` connected or went away (fields read: group_id, status, study_id).
presence_changed = Signal()
# Sent inside the withdrawal's transaction (``participants.withdrawal.participant_withdraw``) with
# ``participant`` (status withdrawn, row locked), ``previous_status``, ``policy`` and ``now``: the receiver in
# ``deliberation.withdrawal`` handles their texts per the policy and lets their group continue.
participant_withdrawn = Signal()
