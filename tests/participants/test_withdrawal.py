"""Withdrawal (issue 18 item 7): the confirm step, ids removed, texts per the study's policy, an audit event kept,
and the group goes on (fewer members, or the take-over bot)."""
from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from deliberation.models import Candidate, GroupEvent, Opinion
from deliberation.services import SubmissionError, draft_save, opinion_submit
from deliberation.sweeper import sweep
from generation.services import candidates_generate
from participants.models import Participant, ParticipantEvent, Presence

from ..factories import join, make_group, make_study

OPINIONS = ["Food taxes hit poor families hardest, so removing them is fair and simple.",
            "We need the revenue for schools; removing food taxes would cut public services."]
SECRET = "My neighbour Alice Example at 12 Elm Street says bread taxes ruin her bakery."


def withdraw(client, participant):
    return client.post(f"/p/{participant.token}/withdraw/", {"confirm": "yes"})


@pytest.mark.django_db
def test_the_study_page_links_to_a_confirm_step_and_nothing_changes_without_the_tick(client):
    participant = join(make_study(slug="w1"), "pw1")
    page = client.get(f"/p/{participant.token}/")
    assert f'href="/p/{participant.token}/withdraw/"'.encode() in page.content
    confirm = client.get(f"/p/{participant.token}/withdraw/")
    assert confirm.status_code == 200 and b"withdraw-confirm" in confirm.content
    refused = client.post(f"/p/{participant.token}/withdraw/", {})
    assert refused.status_code == 400 and b"Please tick the box" in refused.content
    participant.refresh_from_db()
    assert participant.status == "lobby" and participant.recruitment_id == "pw1"


@pytest.mark.django_db
def test_withdrawing_from_the_lobby_removes_ids_keeps_the_row_and_an_audit_event(client):
    study = make_study(slug="w2")
    participant = join(study, "pw2")
    assert Presence.objects.filter(participant=participant).exists()
    response = withdraw(client, participant)
    assert response["Location"] == f"/p/{participant.token}/complete/"
    participant.refresh_from_db()
    assert participant.status == "withdrawn" and participant.withdrawn_at and participant.is_finished
    assert participant.recruitment_id is None and participant.url_params == {} and participant.user_agent == ""
    assert not Presence.objects.filter(participant=participant).exists()
    event = ParticipantEvent.objects.get(participant=participant)
    assert event.kind == "withdrawn"
    assert event.payload == {"previous_status": "lobby", "policy": "anonymise", "group_id": None}
    page = client.get(response["Location"])
    assert b"You have withdrawn" in page.content
    assert withdraw(client, participant).status_code == 302  # twice: nothing more happens
    assert ParticipantEvent.objects.filter(participant=participant).count() == 1
    with pytest.raises(Exception, match="append-only"):
        event.delete()
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():  # the database refuses too
        ParticipantEvent.objects.filter(pk=event.pk).update(kind="edited")


@pytest.mark.django_db(transaction=True)
def test_blank_policy_in_a_group_blanks_their_texts_and_the_group_goes_on_with_fewer_members(client):
    study = make_study(slug="w3", withdrawal_policy="blank")
    group, members = make_group(study)
    leaving = members[2]
    draft_save(participant=leaving, phase="opinion", payload={"text": SECRET})
    withdraw(client, leaving)
    leaving.refresh_from_db()
    assert leaving.status == "withdrawn" and leaving.group_id == group.pk  # the seat stays in the record
    assert leaving.drafts.get().payload == {}
    with pytest.raises(SubmissionError) as refused:
        opinion_submit(participant=leaving, text="I am back after all and want to answer.")
    assert refused.value.code == "not_in_group"
    event = GroupEvent.objects.get(group=group, kind="member_withdrawn")
    assert event.participant_id == leaving.pk
    assert event.payload == {"phase": "opinion", "policy": "blank", "continues": "fewer_members"}
    for member, text in zip(members[:2], OPINIONS):
        opinion_submit(participant=member, text=text)
    group.refresh_from_db()
    assert group.phase == "generating"  # the two who stayed moved it on, without waiting for the deadline
    candidates_generate(group_id=group.pk, round=1)
    assert not Opinion.objects.filter(participant=leaving).exists()
    assert all(SECRET not in str(c.prompt) for c in Candidate.objects.filter(group=group))


@pytest.mark.django_db(transaction=True)
def test_blank_policy_after_generation_scrubs_their_opinion_from_stored_prompts(client):
    study = make_study(slug="w4", withdrawal_policy="blank")
    group, members = make_group(study)
    for member, text in zip(members, [*OPINIONS, SECRET]):
        opinion_submit(participant=member, text=text)
    candidates_generate(group_id=group.pk, round=1)
    assert any(SECRET in str(c.prompt) for c in Candidate.objects.filter(group=group))
    withdraw(client, members[2])
    assert Opinion.objects.get(participant=members[2]).text == ""
    prompts = [str(c.prompt) for c in Candidate.objects.filter(group=group)]
    assert all(SECRET not in p for p in prompts) and any("[withdrawn]" in p for p in prompts)
    assert Opinion.objects.get(participant=members[0]).text == OPINIONS[0]  # nobody else's text is touched


@pytest.mark.django_db(transaction=True)
def test_anonymise_policy_keeps_their_texts(client):
    study = make_study(slug="w5")
    group, members = make_group(study)
    opinion_submit(participant=members[2], text=SECRET)
    withdraw(client, members[2])
    assert Opinion.objects.get(participant=members[2]).text == SECRET
    assert Participant.objects.get(pk=members[2].pk).recruitment_id is None


@pytest.mark.django_db(transaction=True)
def test_with_bot_takeover_the_bot_answers_in_the_withdrawn_seat(client):
    study = make_study(slug="w6", bot_takeover=True)
    group, members = make_group(study)
    withdraw(client, members[2])
    leaving = Participant.objects.get(pk=members[2].pk)
    assert leaving.status == "withdrawn" and leaving.taken_over_at is not None
    assert GroupEvent.objects.get(group=group, kind="member_withdrawn").payload["continues"] == "bot_takeover"
    for member, text in zip(members[:2], OPINIONS):
        opinion_submit(participant=member, text=text)
    group.refresh_from_db()
    assert group.phase == "opinion"  # waits for the bot's answer in the seat
    assert sweep().bot_submissions == 1
    group.refresh_from_db()
    assert group.phase == "generating"
    assert Opinion.objects.get(participant=leaving).by_bot
    assert Participant.objects.get(pk=leaving.pk).status == "withdrawn"  # the bot does not un-withdraw them


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_over_real_websockets_the_withdrawn_page_and_the_others_are_told():
    """The withdrawn member's open page learns it is finished; the others see their seat as away and can
    finish the phase without them."""
    import json

    from channels.db import database_sync_to_async as adb

    from participants.withdrawal import participant_withdraw

    from ..deliberation.test_consumers import close_all, grouped, next_of

    study, people, sockets = await grouped(3)
    await adb(participant_withdraw)(participant=people[2])
    mine = await next_of(sockets[2], "snapshot", where=lambda m: m["participant"]["status"] == "withdrawn")
    assert mine["participant"]["completion_url"] is None
    seen = await next_of(sockets[0], "snapshot",
                         where=lambda m: [s["connected"] for s in m["group"]["members"]] == [True, True, False])
    assert seen["participant"]["status"] == "in_group"
    for ws, text in zip(sockets[:2], OPINIONS):
        await ws.send_to(text_data=json.dumps({"type": "submit_opinion", "text": text, "ref": "r" * 16}))
    await sockets[2].send_to(text_data=json.dumps({"type": "ping", "version": "stale"}))  # a tab left open
    await next_of(sockets[2], "snapshot")
    assert not await adb(Presence.objects.filter(participant_id=people[2].pk).exists)()
    moved = await next_of(sockets[0], "snapshot", where=lambda m: m["group"]["phase"] != "opinion", timeout=10)
    assert moved["group"]["phase"] == "generating"
    await close_all(sockets)
