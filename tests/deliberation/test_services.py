"""Services on the real PostgreSQL: joining, grouping, submissions, timeouts, winners, isolation."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import flow
from deliberation.models import Candidate, Critique, Draft, Group, GroupEvent, Opinion, Rating
from deliberation.selectors import participant_snapshot
from deliberation.services import (
    SubmissionError,
    critique_submit,
    draft_save,
    group_apply,
    opinion_submit,
    ratings_submit,
)
from deliberation.sweeper import sweep
from generation.services import candidates_generate
from participants.models import Participant, Presence
from participants.services import participant_join

from ..factories import join, make_group, make_study

pytestmark = pytest.mark.django_db(transaction=True)

OPINIONS = [
    "Food taxes hit poor families hardest, so removing them is fair and simple.",
    "We need the revenue for schools; removing food taxes would cut public services.",
    "Remove taxes on basic groceries but keep them on sweets and luxury foods.",
]


def rate_all(member, round_=1):
    ids = list(Candidate.objects.filter(group=member.group, round=round_).values_list("id", flat=True))
    return ratings_submit(participant=member, round=round_,
                          ratings={cid: {"agreement": 5, "quality": 4} for cid in ids}, ranking=ids)


def test_same_prolific_id_and_session_resume_the_same_participant_and_keep_url_params():
    study = make_study()
    first = participant_join(study=study, params={"PROLIFIC_PID": "abc", "STUDY_ID": "s1", "SESSION_ID": "x1",
                                                  "utm_source": "mail"})
    again = participant_join(study=study, params={"PROLIFIC_PID": "abc", "SESSION_ID": "x1"})
    assert again.pk == first.pk
    assert first.recruitment_study_id == "s1" and first.url_params["utm_source"] == "mail"
    assert len(first.token) >= 32 and Participant.objects.count() == 1
    with pytest.raises(SubmissionError) as refused:  # the id alone, or with another session, is not enough
        participant_join(study=study, params={"PROLIFIC_PID": "abc", "SESSION_ID": "x2"})
    assert refused.value.code == "recruitment_id_in_use" and Participant.objects.count() == 1


def test_database_refuses_a_second_participant_with_the_same_recruitment_id():
    study = make_study()
    participant_join(study=study, params={"PROLIFIC_PID": "dup"})
    with pytest.raises(IntegrityError), transaction.atomic():
        Participant.objects.create(study=study, recruitment_id="dup")


def test_group_forms_when_max_size_reached():
    group, members = make_group(n=3)
    assert group.phase == "opinion" and group.deadline > timezone.now()
    assert sorted(m.position for m in members) == [1, 2, 3]
    assert all(m.status == "in_group" for m in members)
    assert GroupEvent.objects.filter(group=group, kind="group_formed").exists()


def test_lobby_timeout_with_too_few_participants_gives_the_lobby_code():
    study = make_study(max_group_size=5, min_group_size=3, lobby_timeout_seconds=60)
    alone = join(study, "lonely")
    assert alone.status == "lobby"
    sweep(now=timezone.now() + timedelta(seconds=61))
    alone.refresh_from_db()
    assert alone.status == "lobby_timeout" and alone.completion_code == "LOBBY9"


def test_lobby_timeout_with_min_size_starts_a_smaller_group():
    study = make_study(max_group_size=5, min_group_size=2, lobby_timeout_seconds=60)
    a, b = join(study, "a"), join(study, "b")
    later = timezone.now() + timedelta(seconds=61)
    Presence.objects.update(last_seen=later)  # both kept pinging while they waited
    sweep(now=later)
    a.refresh_from_db(), b.refresh_from_db()
    assert a.group_id == b.group_id is not None


def test_full_round_trip_through_every_phase_with_extractive_backend():
    group, members = make_group(n=3)
    for member, text in zip(members, OPINIONS):
        assert opinion_submit(participant=member, text=text).created
    group.refresh_from_db()
    assert group.phase == "generating"
    assert candidates_generate(group_id=group.pk, round=1) == 2
    group.refresh_from_db()
    assert group.phase == "rating"
    candidate = Candidate.objects.filter(group=group, round=1).first()
    assert candidate.included_opinions.count() == 3 and len(candidate.opinion_order) == 3
    assert candidate.template_name == "consensus" and candidate.prompt_sha256
    for member in members:
        rate_all(member)
    group.refresh_from_db()
    assert group.phase == "critique" and group.winner_round1_id is not None
    for member in members:
        critique_submit(participant=member, text="Please mention luxury foods explicitly.")
    group.refresh_from_db()
    assert group.phase == "revising"
    candidates_generate(group_id=group.pk, round=2)
    group.refresh_from_db()
    assert group.phase == "final_rating"
    for member in members:
        rate_all(member, 2)
    group.refresh_from_db()
    assert group.phase == "done" and group.winner_round2_id and group.outcome == "completed"
    for member in members:
        member.refresh_from_db()
        assert member.status == "completed" and member.completion_code == "DONE123"
    snapshot = participant_snapshot(members[0])
    assert snapshot["group"]["winner"]["id"] == group.winner_round2_id
    kinds = list(GroupEvent.objects.filter(group=group).values_list("kind", flat=True))
    assert kinds.count("phase_changed") == 6 and kinds.count("winner_chosen") == 2


def test_resubmissions_are_idempotent():
    group, members = make_group(n=3)
    assert opinion_submit(participant=members[0], text=OPINIONS[0]).created
    again = opinion_submit(participant=members[0], text=OPINIONS[0])
    assert not again.created
    with pytest.raises(SubmissionError) as exc:  # a different text says so (test_submission_integrity.py)
        opinion_submit(participant=members[0], text="A different text now, trying again")
    assert exc.value.code == "already_submitted"
    assert Opinion.objects.get(participant=members[0]).text == OPINIONS[0]


def test_over_long_and_empty_text_get_clear_errors_and_store_nothing():
    group, members = make_group(n=3)
    with pytest.raises(SubmissionError) as exc:
        opinion_submit(participant=members[0], text="word " * 500)
    assert exc.value.code == "too_long" and "limit is 1000" in exc.value.message
    with pytest.raises(SubmissionError):
        opinion_submit(participant=members[0], text="   ")
    assert not Opinion.objects.exists()


def test_html_is_stored_verbatim_as_text_not_interpreted():
    group, members = make_group(n=3)
    text = "<script>alert('x')</script> I think <b>taxes</b> should go."
    opinion_submit(participant=members[0], text=text)
    assert Opinion.objects.get().text == text


def test_out_of_phase_submissions_are_refused():
    group, members = make_group(n=3)
    with pytest.raises(SubmissionError) as exc:
        critique_submit(participant=members[0], text="too early")
    assert exc.value.code == "wrong_phase"
    with pytest.raises(SubmissionError):
        ratings_submit(participant=members[0], round=1, ratings={}, ranking=[])


def test_a_member_cannot_rate_another_groups_candidates():
    study = make_study(max_group_size=3)
    group_a, members_a = make_group(study, n=3)
    group_b, members_b = make_group(study, n=3)
    assert group_a.pk != group_b.pk
    for group, members in ((group_a, members_a), (group_b, members_b)):
        for member, text in zip(members, OPINIONS):
            opinion_submit(participant=member, text=text)
        candidates_generate(group_id=group.pk, round=1)
    foreign = list(Candidate.objects.filter(group=group_b, round=1).values_list("id", flat=True))
    with pytest.raises(SubmissionError) as exc:
        ratings_submit(participant=members_a[0], round=1,
                       ratings={cid: {"agreement": 1, "quality": 1} for cid in foreign}, ranking=foreign)
    assert exc.value.code == "forbidden"
    assert not Rating.objects.exists()
    snap = participant_snapshot(members_a[0])
    assert {c["id"] for c in snap["group"]["candidates"]}.isdisjoint(foreign)


def test_deadline_stores_drafts_flagged_by_timeout_and_advances_without_browsers():
    group, members = make_group(n=3)
    opinion_submit(participant=members[0], text=OPINIONS[0])
    draft_save(participant=members[1], phase="opinion", payload={"text": "Half-written thought about taxes"})
    group.refresh_from_db()
    sweep(now=group.deadline + timedelta(seconds=1))
    group.refresh_from_db()
    assert group.phase == "generating"
    stored = Opinion.objects.get(participant=members[1])
    assert stored.by_timeout and stored.text.startswith("Half-written")
    assert not Opinion.objects.filter(participant=members[2]).exists()


def test_rating_deadline_stores_partial_draft_ratings_and_schulze_uses_full_rankings():
    group, members = make_group(n=3)
    for member, text in zip(members, OPINIONS):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    ids = list(Candidate.objects.filter(group=group, round=1).values_list("id", flat=True))
    rate_all(members[0])
    draft_save(participant=members[1], phase="rating",
               payload={"ratings": {str(ids[0]): {"agreement": 2, "quality": None}}, "ranking": []})
    group.refresh_from_db()
    sweep(now=group.deadline + timedelta(seconds=1))
    group.refresh_from_db()
    assert group.phase == "critique" and group.winner_round1_id == ids[0]  # the only full ballot ranks ids[0] first
    partial = Rating.objects.get(participant=members[1])
    assert partial.by_timeout and partial.agreement == 2 and partial.quality is None and partial.rank is None


def test_dropped_member_does_not_block_and_gets_the_dropped_code():
    group, members = make_group(n=3)
    members[2].presences.all().delete()
    group_apply(group_id=group.pk, event=flow.PresenceChanged())
    for member, text in zip(members[:2], OPINIONS):
        opinion_submit(participant=member, text=text)
    group.refresh_from_db()
    assert group.phase == "generating"
    candidates_generate(group_id=group.pk, round=1)
    for member in members[:2]:
        rate_all(member)
    for member in members[:2]:
        critique_submit(participant=member, text="Fine by me.")
    candidates_generate(group_id=group.pk, round=2)
    for member in members[:2]:
        rate_all(member, 2)
    members[2].refresh_from_db()
    assert members[2].status == "dropped" and members[2].completion_code == "DROP7"


def test_candidate_generation_is_idempotent_per_round():
    group, members = make_group(n=3)
    for member, text in zip(members, OPINIONS):
        opinion_submit(participant=member, text=text)
    assert candidates_generate(group_id=group.pk, round=1) == 2
    assert candidates_generate(group_id=group.pk, round=1) == 0
    assert Candidate.objects.filter(group=group).count() == 2


def test_drafts_after_the_phase_moved_on_are_ignored():
    group, members = make_group(n=3)
    draft_save(participant=members[0], phase="rating", payload={"ratings": {}})
    assert not Draft.objects.exists()


def test_events_are_append_only():
    group, _ = make_group(n=3)
    event = GroupEvent.objects.filter(group=group).first()
    with pytest.raises(ValidationError):
        event.save()
    with pytest.raises(ValidationError):
        event.delete()


def test_snapshot_hides_other_members_texts():
    group, members = make_group(n=3)
    opinion_submit(participant=members[0], text=OPINIONS[0])
    snap = participant_snapshot(members[1])
    assert OPINIONS[0] not in str(snap)
    assert snap["group"]["members"][0]["submitted"] is True
    assert participant_snapshot(members[0])["group"]["my_opinion"] == OPINIONS[0]


def test_critique_rows_reference_the_winner():
    group, members = make_group(n=3)
    for member, text in zip(members, OPINIONS):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    for member in members:
        rate_all(member)
    critique_submit(participant=members[0], text="Too vague.")
    group.refresh_from_db()
    assert Critique.objects.get().candidate_id == group.winner_round1_id
    assert Group.objects.get().phase == "critique"


@pytest.mark.parametrize("method", ["borda", "copeland"])
def test_study_aggregation_method_chooses_the_winner(method):
    study = make_study(slug=f"agg-{method}", aggregation_method=method)
    group, members = make_group(study, n=3)
    for member, text in zip(members, OPINIONS):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    ids = list(Candidate.objects.filter(group=group, round=1).values_list("id", flat=True))
    for member in members:  # everyone ranks the second candidate first
        ratings_submit(participant=member, round=1, ratings={c: {"agreement": 4, "quality": 4} for c in ids},
                       ranking=[ids[1], ids[0]])
    group.refresh_from_db()
    assert group.winner_round1_id == ids[1]
    event = GroupEvent.objects.get(group=group, kind="winner_chosen")
    assert event.payload["method"] == method and event.payload["ballots"] == 3


def test_a_second_draft_replaces_the_first_and_a_draft_for_a_past_phase_is_refused():
    group, members = make_group(n=3)
    assert draft_save(participant=members[0], phase="opinion", payload={"text": "first words"})
    assert draft_save(participant=members[0], phase="opinion", payload={"text": "first words, then more"})
    assert list(Draft.objects.filter(participant=members[0]).values_list("payload", flat=True)) == \
        [{"text": "first words, then more"}]
    assert not draft_save(participant=members[0], phase="critique", payload={"text": "not yet"})
    assert Draft.objects.filter(participant=members[0]).count() == 1
