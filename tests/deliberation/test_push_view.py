"""The push path: a socket turns the pushed shared group state into its member's snapshot without reading the
database (``selectors.PushView``). Whatever it shows must be exactly what a database read would show at that
moment, and where it cannot know (own submissions, another tab, a time-out storing a draft) it must ask for a
read. Checked at every step of whole deliberations on the real PostgreSQL, timeouts and drafts included."""
from __future__ import annotations

from datetime import timedelta

import pytest

from deliberation import realtime
from deliberation.models import Candidate, Group
from deliberation.selectors import PushView, participant_snapshot, read_group_shared_state
from deliberation.services import critique_submit, draft_save, opinion_submit, ratings_submit
from deliberation.sweeper import sweep
from generation.services import candidates_generate
from participants.models import Participant

from ..factories import make_group, make_study

pytestmark = pytest.mark.django_db(transaction=True)

OPINIONS = [
    "Food taxes hit poor families hardest, so removing them is fair and simple.",
    "We need the revenue for schools; removing food taxes would cut public services.",
    "Remove taxes on basic groceries but keep them on sweets and luxury foods.",
    "Keep the tax but give every household a grocery rebate at the end of the year.",
]
VOLATILE = ("server_time",)


def comparable(snapshot: dict) -> dict:
    out = {k: v for k, v in snapshot.items() if k not in VOLATILE}
    if out.get("group"):
        out["group"] = {k: v for k, v in out["group"].items() if k != "seconds_left"}
    return out


class Sockets:
    """One simulated socket per member, doing what the consumer does with each push."""

    def __init__(self, group: Group, members: list[Participant]):
        self.group, self.members = group, members
        self.views = {m.pk: PushView(m.pk, participant_snapshot(m)) for m in members}
        self.composed = self.reads = 0
        self.read_for: list[tuple[int, str]] = []

    def push(self, label: str) -> None:
        shared = read_group_shared_state(self.group.pk)
        assert shared is not None
        for member in self.members:
            view = self.views[member.pk]
            if not view.is_news(shared):
                continue
            composed = view.snapshot(shared)
            truth = participant_snapshot(member)
            if composed is None:
                self.reads += 1
                self.read_for.append((member.pk, label))
                self.views[member.pk] = PushView(member.pk, truth)
            else:
                self.composed += 1
                assert comparable(composed) == comparable(truth), (label, member.pk)

    def stored(self, member: Participant, kind: str, result, round_: int | None = None) -> None:
        """What the consumer does with its own submission's result before the push arrives."""
        self.views[member.pk].answer_stored(member.group_id, kind, result.stored, round_)

    def draft(self, member: Participant, phase: str, payload: dict, *, this_tab: bool = True) -> None:
        assert draft_save(participant=member, phase=phase, payload=payload)
        if this_tab:
            self.views[member.pk].draft_saved(phase, payload)


def rate(member: Participant, round_: int, agreement: int = 5):
    ids = list(Candidate.objects.filter(group=member.group, round=round_, shown=True).values_list("id", flat=True))
    result = ratings_submit(participant=member, round=round_,
                            ratings={cid: {"agreement": agreement, "quality": 4} for cid in ids}, ranking=ids[::-1])
    assert result.created
    return result


def refreshed(members: list[Participant]) -> list[Participant]:
    for m in members:
        m.refresh_from_db()
    return members


@pytest.mark.parametrize("own_socket", [True, False], ids=["own-socket", "other-tab"])
def test_pushed_state_gives_every_member_the_snapshot_a_database_read_gives(own_socket):
    """own-socket: each member submits on the socket that shows the pushes (the consumer keeps what it
    stored); other-tab: every submission comes from elsewhere, so the socket must read after each."""
    group, members = make_group(n=4)
    s = Sockets(group, members)
    keep = s.stored if own_socket else (lambda *args: None)
    s.draft(members[0], "opinion", {"text": "A first thought"})
    for i, member in enumerate(members):
        result = opinion_submit(participant=member, text=OPINIONS[i] + "  \n")
        assert result.created and result.stored == OPINIONS[i]  # the cleaned text, as stored
        keep(member, "opinion", result)
        s.push(f"opinion {i}")
    assert candidates_generate(group_id=group.pk, round=1) == 2
    s.push("candidates")
    s.draft(members[1], "rating", {"ratings": {"1": {"agreement": 3, "quality": None}}, "ranking": []})
    s.push("after a draft")
    for i, member in enumerate(members):
        keep(member, "ratings", rate(member, 1, agreement=2 + i), 1)
        s.push(f"rating {i}")
    for i, member in enumerate(members):
        result = critique_submit(participant=member, text=f"Please say more about rebates ({i}).")
        keep(member, "critique", result)
        s.push(f"critique {i}")
    assert candidates_generate(group_id=group.pk, round=2) >= 1
    s.push("revision")
    for i, member in enumerate(refreshed(members)):
        keep(member, "ratings", rate(member, 2), 2)
        s.push(f"final rating {i}")
    group.refresh_from_db()
    assert group.phase == "done"
    own = {(m.pk, f"{kind} {i}") for i, m in enumerate(members)
           for kind in ("opinion", "rating", "critique", "final rating")}
    if own_socket:
        # The socket never read: every push was shown from the pushed state, the finish (status and completion
        # code) included.
        assert s.read_for == [], s.read_for
        assert s.composed >= 64, s.composed
    else:
        # It read after each of its member's submissions (it never saw the text), no more.
        assert set(s.read_for) == own, set(s.read_for) ^ own
        assert s.composed >= 48, s.composed
    assert {m.pk: s.views[m.pk].status for m in members} == {m.pk: "completed" for m in members}


def test_a_time_out_that_stores_a_draft_as_the_answer_makes_the_socket_read():
    group, members = make_group(n=3)
    s = Sockets(group, members)
    opinion_submit(participant=members[0], text=OPINIONS[0])
    s.push("one opinion")
    opinion_submit(participant=members[1], text=OPINIONS[1])
    s.push("two opinions")
    s.draft(members[2], "opinion", {"text": "Half-written thought about food taxes"})
    s.push("draft")
    group.refresh_from_db()
    sweep(now=group.deadline + timedelta(seconds=1))  # stores member 2's draft as their opinion
    group.refresh_from_db()
    assert group.phase == "generating"
    s.push("deadline")
    assert (members[2].pk, "deadline") in s.read_for
    assert s.views[members[2].pk].own["opinion"].startswith("Half-written")


def test_another_tabs_submission_or_the_wrong_group_is_never_composed():
    group, members = make_group(n=3)
    other_group, _ = make_group(make_study(slug="other"), n=3)
    s = Sockets(group, members)
    view = s.views[members[0].pk]
    # Another tab of member 0 submits: the push says member 0 submitted, this socket never saw the text.
    opinion_submit(participant=members[0], text=OPINIONS[0])
    shared = read_group_shared_state(group.pk)
    assert view.snapshot(shared) is None
    # Another group's state never becomes this member's snapshot.
    assert view.snapshot(read_group_shared_state(other_group.pk)) is None
    # An older state than the one shown is not news.
    s.push("after the other tab")
    assert not s.views[members[1].pk].is_news(read_group_shared_state(group.pk))


def test_the_group_push_carries_the_shared_state_and_falls_back_to_a_bare_signal():
    group, members = make_group(n=3)
    message = realtime.group_message(group.pk)
    assert message["type"] == "state.changed" and message["group"]["id"] == group.pk
    assert message["group"]["version"] == Group.objects.get(pk=group.pk).version
    assert sorted(pid for pid, _, _ in message["group"]["members"]) == sorted(m.pk for m in members)
    assert realtime.group_message(10 ** 9) == realtime.STATE_CHANGED  # a vanished group: members read
