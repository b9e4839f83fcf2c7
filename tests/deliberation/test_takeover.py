"""Bot takeover: a dropped member's remaining answers come from a server-side simulated participant."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.utils import timezone

from deliberation.models import Candidate, Critique, Draft, GroupEvent, Opinion, Rating
from deliberation.monitor import study_monitor_state
from deliberation.services import SubmissionError, critique_submit, draft_save, opinion_submit, ratings_submit
from deliberation.sweeper import sweep
from deliberation.takeover import Seat, decide
from generation.services import candidates_generate
from participants.models import Participant

from ..factories import make_group, make_study

OPINIONS = ["Food taxes hit poor families hardest, so removing them is fair and simple.",
            "We need the revenue for schools; removing food taxes would cut public services."]
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=dt_timezone.utc)


# --- the pure rule ------------------------------------------------------------------------------
def seat(pid, *, connected=False, submitted=False, taken_over=False, away=60):
    return Seat(pid, connected, submitted, taken_over, T0 - timedelta(seconds=away))


def test_decide_takes_over_only_members_away_longer_than_the_grace_period():
    seats = [seat(1, connected=True), seat(2, away=31), seat(3, away=5), seat(4, away=100, submitted=True)]
    decision = decide("opinion", seats, T0, enabled=True, grace_seconds=30)
    assert decision.take_over == (2,) and decision.act_for == (2,)


def test_decide_keeps_answering_for_taken_over_members_until_they_have_submitted():
    seats = [seat(1, taken_over=True), seat(2, taken_over=True, submitted=True), seat(3, connected=True)]
    assert decide("rating", seats, T0, enabled=True, grace_seconds=30).act_for == (1,)
    assert decide("rating", seats, T0, enabled=True, grace_seconds=30).take_over == ()


def test_decide_takes_nobody_over_once_every_human_has_gone():
    seats = [seat(1, away=100), seat(2, away=100), seat(3, taken_over=True)]
    decision = decide("critique", seats, T0, enabled=True, grace_seconds=30)
    assert decision.take_over == () and decision.act_for == (3,)  # earlier takeovers still answer


def test_decide_does_nothing_when_off_or_outside_input_phases():
    seats = [seat(1, away=1000), seat(2, taken_over=True)]
    assert decide("opinion", seats, T0, enabled=False, grace_seconds=30).act_for == ()
    for phase in ("generating", "revising", "done"):
        assert decide(phase, seats, T0, enabled=True, grace_seconds=30).act_for == ()


# --- on the real database -----------------------------------------------------------------------
def drop(member, seconds_ago: float) -> None:
    member.presences.all().delete()
    Participant.objects.filter(pk=member.pk).update(last_seen_at=timezone.now() - timedelta(seconds=seconds_ago))


def rate_all(member, round_):
    ids = list(Candidate.objects.filter(group=member.group, round=round_).values_list("id", flat=True))
    return ratings_submit(participant=member, round=round_,
                          ratings={cid: {"agreement": 5, "quality": 4} for cid in ids}, ranking=ids)


def phase_of(group) -> str:
    group.refresh_from_db()
    return group.phase


@pytest.mark.django_db(transaction=True)
def test_member_dropping_in_the_opinion_phase_is_taken_over_and_the_group_finishes():
    study = make_study(slug="takeover", bot_takeover=True)
    group, members = make_group(study)
    gone = members[2]
    draft_save(participant=gone, phase="opinion", payload={"text": "Bread and milk should never be taxed at all"})
    drop(gone, seconds_ago=5)
    assert sweep().members_taken_over == 0  # still within the grace period: they may come back
    drop(gone, seconds_ago=60)
    report = sweep()
    assert report.members_taken_over == 1 and report.bot_submissions == 1
    gone.refresh_from_db()
    assert gone.status == "dropped" and gone.taken_over_at is not None and gone.completion_code == "DROP7"
    assert Opinion.objects.get(participant=gone).text == "Bread and milk should never be taxed at all"

    for member, text in zip(members[:2], OPINIONS):
        opinion_submit(participant=member, text=text)
    assert phase_of(group) == "generating"
    candidates_generate(group_id=group.pk, round=1)
    assert phase_of(group) == "rating"
    for member in members[:2]:
        rate_all(member, 1)
    assert phase_of(group) == "rating"  # the group waits for the bot, not for the deadline
    assert sweep().bot_submissions == 1
    assert phase_of(group) == "critique"
    for member in members[:2]:
        critique_submit(participant=member, text="It should mention families with children.")
    assert phase_of(group) == "critique"
    sweep()
    assert phase_of(group) == "revising"
    candidates_generate(group_id=group.pk, round=2)
    for member in members[:2]:
        rate_all(member, 2)
    sweep()
    assert phase_of(group) == "done" and group.outcome == "completed"

    # the bot's answers went through the same services: full ballots in both rounds, a critique of the winner
    for round_ in (1, 2):
        shown = Candidate.objects.filter(group=group, round=round_, shown=True).count()
        ranks = sorted(Rating.objects.filter(participant=gone, round=round_).values_list("rank", flat=True))
        assert ranks == list(range(1, shown + 1))
    critique = Critique.objects.get(participant=gone)
    assert critique.candidate_id == group.winner_round1_id and not critique.by_timeout
    events = list(GroupEvent.objects.filter(group=group, participant=gone).values_list("kind", "payload"))
    assert [k for k, _ in events if k == "taken_over_by_bot"] == ["taken_over_by_bot"]
    assert [p["phase"] for k, p in events if k == "bot_submitted"] == ["opinion", "rating", "critique",
                                                                       "final_rating"]
    assert next(p for k, p in events if k == "bot_submitted")["source"] == "draft"
    statuses = dict(Participant.objects.filter(group=group).values_list("pk", "status"))
    assert statuses == {members[0].pk: "completed", members[1].pk: "completed", gone.pk: "dropped"}
    monitor = study_monitor_state(study)["groups"][0]["members"]
    assert [m["bot"] for m in monitor] == [False, False, True]


@pytest.mark.django_db(transaction=True)
def test_without_a_usable_draft_the_bot_writes_an_opinion_from_the_question():
    study = make_study(slug="takeover2", bot_takeover=True)
    group, members = make_group(study)
    Draft.objects.create(group=group, participant=members[0], phase="opinion", payload={"text": "hmm"})
    drop(members[0], seconds_ago=120)
    sweep()
    opinion = Opinion.objects.get(participant=members[0])
    assert "taxes on food" in opinion.text.lower() and len(opinion.text.split()) >= 8
    assert GroupEvent.objects.get(kind="bot_submitted").payload["source"] == "question"


@pytest.mark.django_db(transaction=True)
def test_with_bot_takeover_off_a_dropped_member_is_left_alone_as_before():
    group, members = make_group(make_study(slug="plain", bot_takeover=False))
    gone = members[2]
    drop(gone, seconds_ago=600)
    report = sweep()
    assert report.members_taken_over == 0 and report.bot_submissions == 0
    gone.refresh_from_db()
    assert gone.status == "in_group" and gone.taken_over_at is None
    for member, text in zip(members[:2], OPINIONS):
        opinion_submit(participant=member, text=text)
    assert phase_of(group) == "generating"  # the connected members alone move the group on
    assert not Opinion.objects.filter(participant=gone).exists()
    assert not GroupEvent.objects.filter(kind__in=["taken_over_by_bot", "bot_submitted"]).exists()


# --- bot answers are not human data (issue 15) ----------------------------------------------------
def take_over_in_opinion_phase(slug: str):
    study = make_study(slug=slug, bot_takeover=True)
    group, members = make_group(study)
    gone = members[2]
    draft_save(participant=gone, phase="opinion", payload={"text": "Bread and milk should never be taxed at all"})
    drop(gone, seconds_ago=60)
    assert sweep().bot_submissions == 1
    gone.refresh_from_db()
    return group, members, gone


@pytest.mark.django_db(transaction=True)
def test_every_answer_the_takeover_writes_is_flagged_by_bot_even_from_the_members_own_draft():
    group, members, gone = take_over_in_opinion_phase("flag-bot")
    bot_opinion = Opinion.objects.get(participant=gone)
    assert bot_opinion.text == "Bread and milk should never be taxed at all" and bot_opinion.by_bot
    assert Draft.objects.get(participant=gone, phase="opinion").participant_id == gone.pk  # the draft stays theirs
    for member, text in zip(members[:2], OPINIONS):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    for member in members[:2]:
        rate_all(member, 1)
    sweep()
    assert phase_of(group) == "critique"
    for member in members[:2]:
        critique_submit(participant=member, text="It should mention families with children.")
    sweep()
    by_bot = {(kind, pid): flag for kind, model in (("opinion", Opinion), ("rating", Rating), ("critique", Critique))
              for pid, flag in model.objects.filter(group=group).values_list("participant_id", "by_bot")}
    assert {key for key, flag in by_bot.items() if flag} == {("opinion", gone.pk), ("rating", gone.pk),
                                                             ("critique", gone.pk)}
    assert len(by_bot) == 9  # everyone answered each step; only the bot's answers are flagged
    # the one default filter leaves them out, and gives them back when asked
    assert set(Rating.objects.filter(group=group).human().values_list("participant_id", flat=True)) == \
        {m.pk for m in members[:2]}
    assert Rating.objects.filter(group=group).human(include_bots=True).count() == \
        Rating.objects.filter(group=group).count()
    assert not Opinion.objects.filter(group=group, participant=gone).human().exists()


@pytest.mark.django_db(transaction=True)
def test_a_taken_over_member_can_no_longer_write_but_the_takeover_still_can():
    group, members, gone = take_over_in_opinion_phase("flag-refuse")
    for member, text in zip(members[:2], OPINIONS):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    assert phase_of(group) == "rating"
    ids = list(Candidate.objects.filter(group=group, round=1).values_list("id", flat=True))
    attempts = [
        lambda: draft_save(participant=gone, phase="rating", payload={"ranking": ids}),
        lambda: ratings_submit(participant=gone, round=1, ratings={c: {"agreement": 7, "quality": 7} for c in ids},
                               ranking=ids),
        lambda: opinion_submit(participant=gone, text="I am back and want to change my opinion now."),
        lambda: critique_submit(participant=gone, text="Too long."),
    ]
    for attempt in attempts:
        with pytest.raises(SubmissionError) as refused:
            attempt()
        assert refused.value.code == "taken_over" and "simulated participant" in refused.value.message
    assert not Rating.objects.filter(participant=gone).exists()
    assert not Draft.objects.filter(participant=gone, phase="rating").exists()
    assert sweep().bot_submissions == 1  # the takeover itself still answers for the seat
    assert Rating.objects.filter(participant=gone, by_bot=True).count() == len(ids)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("status", ["dropped", "completed", "lobby_timeout"])
def test_a_person_no_longer_in_a_group_cannot_write(status):
    group, members = make_group(make_study(slug=f"gone-{status}"))
    person = members[0]
    Participant.objects.filter(pk=person.pk).update(status=status)
    for attempt in (lambda: draft_save(participant=person, phase="opinion", payload={"text": "still typing"}),
                    lambda: opinion_submit(participant=person, text=OPINIONS[0])):
        with pytest.raises(SubmissionError) as refused:
            attempt()
        assert refused.value.code == "not_in_group"
    assert not Opinion.objects.filter(participant=person).exists()
    assert not Draft.objects.filter(participant=person).exists()
    opinion_submit(participant=members[1], text=OPINIONS[1])  # the others are unaffected


@pytest.mark.django_db(transaction=True)
def test_the_migration_flags_answers_the_takeover_stored_before_by_bot_existed():
    from importlib import import_module

    from django.apps import apps

    group, members, gone = take_over_in_opinion_phase("flag-backfill")
    for member, text in zip(members[:2], OPINIONS):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    for member in members[:2]:
        rate_all(member, 1)
    sweep()
    def flagged():
        return {model: set(model.objects.filter(by_bot=True).values_list("pk", flat=True))
                for model in (Opinion, Rating)}

    before = flagged()
    assert all(before.values())
    for model in (Opinion, Rating):
        model.objects.update(by_bot=False)  # as stored before the field existed
    import_module("deliberation.migrations.0007_answers_by_bot").flag_earlier_bot_answers(apps, None)
    assert flagged() == before
