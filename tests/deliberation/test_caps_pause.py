"""Quotas and caps close the study (and the join page says so); pause freezes deadlines, resume restores them."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import SubmissionError
from deliberation.models import Candidate, Group, GroupEvent, Study, StudyArm
from deliberation.pause import study_pause, study_resume
from deliberation.selectors import participant_snapshot
from deliberation.services import opinion_submit
from deliberation.sweeper import sweep
from generation.services import candidates_generate
from participants.models import Participant
from participants.services import check_joinable

from ..factories import join, make_group, make_study

pytestmark = pytest.mark.django_db(transaction=True)

OPINIONS = [
    "Food taxes hit poor families hardest, so removing them is fair and simple.",
    "We need the revenue for schools; removing food taxes would cut public services.",
    "Remove taxes on basic groceries but keep them on sweets and luxury foods.",
]


def test_group_cap_closes_the_study_and_the_join_page_says_it_is_full(client):
    study = make_study(slug="capped", max_groups=1)
    make_group(study, n=3)
    study.refresh_from_db()
    assert not study.is_active and study.closed_reason == "Closed itself: group cap of 1 reached."
    response = client.get("/s/capped/")
    page = response.content.decode()
    assert response.status_code == 409 and "This study is full" in page
    assert 'name="viewport"' in page  # the message page is the phone-friendly base layout
    assert "consent" not in page.lower()  # no consent form for a closed study
    with pytest.raises(SubmissionError) as refused:  # nor through the service
        check_joinable(study=study, params={})
    assert refused.value.code == "inactive"


def test_participant_cap_refuses_the_next_consent_and_closes_the_study(client):
    study = make_study(slug="pcap", max_participants=3)
    members = [join(study, f"p{i}") for i in range(3)]  # the third forms a group and reaches the cap
    study.refresh_from_db()
    assert not study.is_active and "participant cap of 3" in study.closed_reason
    assert all(Participant.objects.get(pk=m.pk).status == "in_group" for m in members)
    response = client.get("/s/pcap/?PROLIFIC_PID=late")
    assert response.status_code == 409 and "This study is full" in response.content.decode()
    assert Participant.objects.filter(study=study).count() == 3  # nothing stored for the refused person


def test_arm_caps_send_groups_to_open_arms_and_close_the_study_when_all_are_full():
    study = make_study(slug="arms-capped", generation_seed=2)
    StudyArm.objects.create(study=study, name="a", generation_backend="extractive", max_groups=1)
    StudyArm.objects.create(study=study, name="b", generation_backend="extractive", max_participants=6)
    groups = [make_group(study, n=3)[0] for _ in range(3)]
    assert sorted(g.arm.name for g in groups) == ["a", "b", "b"]
    study.refresh_from_db()
    assert not study.is_active and "every arm reached its cap" in study.closed_reason
    # reopened by hand: the next person waits in the lobby, no group forms beyond the caps, and the study closes
    Study.objects.filter(pk=study.pk).update(is_active=True, closed_reason="")
    late = join(Study.objects.get(pk=study.pk), "late")
    assert Participant.objects.get(pk=late.pk).status == "lobby"
    assert Group.objects.filter(study=study).count() == 3
    assert not Study.objects.get(pk=study.pk).is_active


def test_admin_bad_quota_values_are_refused_by_the_model():
    from django.core.exceptions import ValidationError

    study = make_study(slug="bad-quota", min_group_size=3, max_participants=2)
    with pytest.raises(ValidationError) as bad:
        study.full_clean()
    assert "cannot fill one group of at least 3" in str(bad.value)
    study.max_participants, study.max_groups = None, 0
    with pytest.raises(ValidationError) as zero:
        study.full_clean()
    assert "A cap must be at least 1" in str(zero.value)


def test_pause_freezes_every_deadline_the_sweeper_times_nothing_out_and_resume_restores_the_time_left(client):
    study = make_study(slug="pausable", opinion_seconds=300)
    group, members = make_group(study, n=3)
    started = timezone.now()
    left_at_pause = (group.deadline - started).total_seconds()
    assert study_pause(study_id=study.pk, user="exp", now=started) == 1
    group.refresh_from_db()
    assert group.deadline is None and group.paused_seconds_left == pytest.approx(left_at_pause, abs=0.01)
    snapshot = participant_snapshot(members[0])
    assert snapshot["group"]["paused"] is True and snapshot["group"]["seconds_left"] is None
    assert snapshot["group"]["paused_seconds_left"] == int(group.paused_seconds_left)

    sweep(now=started + timedelta(hours=2))  # far past the old deadline: nothing times out
    group.refresh_from_db()
    assert group.phase == "opinion" and group.deadline is None
    assert not GroupEvent.objects.filter(group=group, kind="phase_changed").exists()

    page = client.get("/s/pausable/?PROLIFIC_PID=during-pause")
    assert page.status_code == 503 and "paused" in page.content.decode()
    assert not Participant.objects.filter(recruitment_id="during-pause").exists()
    assert study_pause(study_id=study.pk, now=started) == 0  # pausing twice changes nothing

    resumed_at = started + timedelta(hours=3)
    assert study_resume(study_id=study.pk, user="exp", now=resumed_at) == 1
    group.refresh_from_db()
    assert group.paused_seconds_left is None
    assert (group.deadline - resumed_at).total_seconds() == pytest.approx(left_at_pause, abs=0.01)
    kinds = list(GroupEvent.objects.filter(group=group, kind__in=("paused", "resumed"))
                 .values_list("kind", "payload__user"))
    assert kinds == [("paused", "exp"), ("resumed", "exp")]
    assert GroupEvent.objects.get(group=group, kind="resumed").payload["paused_seconds"] == 3 * 3600
    assert participant_snapshot(members[0])["group"]["paused"] is False
    sweep(now=group.deadline + timedelta(seconds=1))  # the restored deadline is live again
    group.refresh_from_db()
    assert group.phase != "opinion"


def test_a_phase_that_starts_during_the_pause_is_frozen_with_its_full_time():
    study = make_study(slug="pause-gen", rating_seconds=200)
    group, members = make_group(study, n=3)
    study_pause(study_id=study.pk)
    for member, text in zip(members, OPINIONS, strict=True):  # members may still answer while paused
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    group.refresh_from_db()
    assert group.phase == "rating" and Candidate.objects.filter(group=group).exists()
    assert group.deadline is None and group.paused_seconds_left == pytest.approx(200, abs=1)
    study_resume(study_id=study.pk)
    group.refresh_from_db()
    assert (group.deadline - timezone.now()).total_seconds() == pytest.approx(200, abs=5)


def test_monitor_state_shows_arms_and_the_pause_buttons_need_the_change_permission(client, admin_client):
    from django.contrib.auth.models import Permission, User

    study = make_study(slug="monitored")
    StudyArm.objects.create(study=study, name="only-arm", generation_backend="extractive")
    group, _ = make_group(study, n=3)
    state = admin_client.get(f"/monitor/study/{study.pk}/state.json").json()
    assert state["groups"][0]["arm"] == "only-arm" and state["groups_by_arm"] == {"only-arm": 1}
    assert state["study"]["paused_at"] is None and state["study"]["is_active"] is True

    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_study"))
    client.force_login(viewer)
    assert client.post(f"/monitor/study/{study.pk}/pause/").status_code == 403
    assert client.get(f"/monitor/study/{study.pk}/pause/").status_code in (403, 405)
    assert Study.objects.get(pk=study.pk).paused_at is None

    response = admin_client.post(f"/monitor/study/{study.pk}/pause/", follow=True)
    assert "1 running group(s) are frozen" in response.content.decode()
    state = admin_client.get(f"/monitor/study/{study.pk}/state.json").json()
    assert state["study"]["paused_at"] and state["groups"][0]["paused_seconds_left"] > 0
    assert "monitored, paused)" in admin_client.get("/monitor/").content.decode()
    again = admin_client.post(f"/monitor/study/{study.pk}/pause/", follow=True)  # a second click, another tab
    assert "The study was paused already." in again.content.decode()
    assert GroupEvent.objects.filter(group=group, kind="paused").count() == 1
    response = admin_client.post(f"/monitor/study/{study.pk}/resume/", follow=True)
    assert "1 group(s) continue" in response.content.decode()
    again = admin_client.post(f"/monitor/study/{study.pk}/resume/", follow=True)
    assert "The study is not paused." in again.content.decode()
    assert Group.objects.get(pk=group.pk).deadline is not None
    assert admin_client.post("/monitor/study/999999/pause/").status_code == 404
