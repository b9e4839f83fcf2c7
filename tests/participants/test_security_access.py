"""Access control and web hardening: tokens, cookies, other groups, CSRF, the monitor, join rate limit.

Complements tests/deliberation/test_consumers.py (unknown token 4404, another group's candidates
refused, over-long opinion) and test_fuzz.py (hostile frames); nothing here repeats those.
"""
from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async as adb
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application
from deliberation.models import Critique, Group, Opinion
from deliberation.selectors import participant_snapshot
from deliberation.services import critique_submit, opinion_submit
from participants.models import Participant
from participants.services import client_ip, join_rate_allowed

from ..factories import make_group, make_study
from ..joining import consent_hash, join_and_consent

OPINIONS = ["Food taxes hit poor families hardest, so removing them is fair.",
            "We need the revenue for schools and hospitals, keep the taxes.",
            "Remove taxes on basic groceries but keep them on sweets."]


# --- tokens and cookies over HTTP ---------------------------------------------------------------
@pytest.mark.django_db
def test_guessed_and_altered_tokens_find_nobody(client):
    group, members = make_group()
    token = members[0].token
    for guess in (token[:-1], token.upper() if token.upper() != token else token.lower(), token + "x",
                  str(members[0].pk), "../" + token, "%00"):
        assert client.get(f"/p/{guess}/").status_code == 404, guess
        assert client.get(f"/p/{guess}/complete/").status_code == 404, guess


@pytest.mark.django_db
def test_a_cookie_from_another_study_or_participant_does_not_resume_them(client):
    first = make_study(slug="first")
    second = make_study(slug="second")
    victim_page = join_and_consent(client, "/s/first/?PROLIFIC_PID=victim&SESSION_ID=v1")["Location"]
    victim = Participant.objects.get(recruitment_id="victim")
    # The attacker's browser carries the victim's token under the second study's cookie name.
    attacker = Client()
    attacker.cookies[f"dlb_p_{second.pk}"] = victim.token
    landed = join_and_consent(attacker, "/s/second/")["Location"]
    assert landed != victim_page
    assert Participant.objects.get(token=landed.split("/")[2]).study == second
    # ... and a PROLIFIC_PID (and SESSION_ID) of the first study, used on the second, is a different participant.
    assert join_and_consent(Client(), "/s/second/?PROLIFIC_PID=victim&SESSION_ID=v1")["Location"] != victim_page
    assert Participant.objects.filter(recruitment_id="victim").count() == 2
    assert first.participants.count() == 1


@pytest.mark.django_db
def test_snapshot_never_contains_another_members_text_token_or_id():
    group, members = make_group()
    for member, text in zip(members, OPINIONS):
        opinion_submit(participant=member, text=text)
    group.refresh_from_db()
    assert group.phase == "generating"
    me, others = members[0], members[1:]
    raw = json.dumps(participant_snapshot(me))
    assert OPINIONS[0] in raw  # my own opinion is shown back to me
    for other, text in zip(others, OPINIONS[1:]):
        assert text not in raw and other.token not in raw and f'"id": {other.pk},' not in raw
    assert me.token not in raw  # the page already has it; the socket never echoes identity


@pytest.mark.django_db
def test_the_monitor_and_admin_refuse_participants(client):
    group, members = make_group()
    client.get(f"/p/{members[0].token}/")  # a participant's browser, with their cookies
    for url in ("/monitor/", f"/monitor/study/{group.study_id}/", f"/monitor/study/{group.study_id}/state.json",
                "/admin/deliberation/opinion/"):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    response = client.post(f"/monitor/group/{group.pk}/advance/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    group.refresh_from_db()
    assert group.phase == "opinion"


# --- CSRF ---------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_consent_form_needs_the_csrf_token():
    make_study(slug="s1")
    browser = Client(enforce_csrf_checks=True)
    link = "/s/s1/?PROLIFIC_PID=p1&SESSION_ID=se"
    form = browser.get(link)
    assert b'name="csrfmiddlewaretoken"' in form.content
    fields = {"consent": "yes", "consent_sha256": consent_hash(form)}
    forged = Client(enforce_csrf_checks=True)  # another site posting on the participant's behalf
    assert forged.post(link, fields).status_code == 403
    assert browser.post(link, fields).status_code == 403  # cookie alone is not enough
    assert not Participant.objects.exists()
    token = browser.cookies["csrftoken"].value
    assert browser.post(link, {**fields, "csrfmiddlewaretoken": token}).status_code == 302
    assert Participant.objects.get().status == "lobby"


# --- over-long input ----------------------------------------------------------------------------
@pytest.mark.django_db
def test_overlong_join_parameters_are_bounded_not_fatal(client):
    make_study(slug="s1")
    link = "/s/s1/?" + urlencode({"PROLIFIC_PID": "p" * 5000, "SESSION_ID": "s" * 5000, "x" * 500: "y" * 5000})
    response = join_and_consent(client, link)
    assert response.status_code == 302
    participant = Participant.objects.get()
    assert len(participant.recruitment_id) == 128
    assert all(len(k) <= 64 and len(v) <= 128 for k, v in participant.url_params.items())
    # the same over-long ids resume the same participant, also from another browser
    assert Client().get(link)["Location"] == response["Location"]


@pytest.mark.django_db
def test_control_characters_in_links_and_cookies_are_harmless(client):
    study = make_study(slug="s1")
    for query in ("?PROLIFIC_PID=%00", "?a%00=b%00", "?STUDY_ID=%00x&PROLIFIC_PID=p%00q"):
        assert join_and_consent(Client(), "/s/s1/" + query).status_code == 302, query
    assert Participant.objects.filter(recruitment_id="pq").exists()
    assert not any("\x00" in json.dumps(p.url_params) for p in Participant.objects.all())
    other = Client(HTTP_USER_AGENT="bot\x00agent")
    other.cookies[f"dlb_p_{study.pk}"] = "abc\x00def"
    assert join_and_consent(other, "/s/s1/").status_code == 302
    assert Participant.objects.filter(user_agent="botagent").exists()


@pytest.mark.django_db
def test_overlong_critique_is_refused_with_the_limit_and_nothing_stored():
    from deliberation.services import SubmissionError

    study = make_study(slug="crit", max_text_chars=200)
    group, members = make_group(study)
    Group.objects.filter(pk=group.pk).update(phase="critique")
    with pytest.raises(SubmissionError) as info:
        critique_submit(participant=members[0], text="too long " * 40)
    assert info.value.code == "too_long" and "200" in info.value.message and "kept" in info.value.message
    assert not Critique.objects.exists()


# --- websockets ---------------------------------------------------------------------------------
async def _open(token: str, origin: bytes = b"http://localhost"):
    ws = WebsocketCommunicator(application, f"/ws/p/{token}/", headers=[(b"origin", origin)])
    connected, code = await ws.connect()
    return ws, connected, code


async def _next(ws, kind: str, timeout: float = 5.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        message = json.loads(await ws.receive_from(timeout=max(0.01, deadline - asyncio.get_running_loop().time())))
        if message["type"] == kind:
            return message


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_mangled_websocket_tokens_are_refused_cleanly():
    group, members = await adb(make_group)()
    for guess in ("%00", members[0].token + "%00", members[0].token[:-2], "a" * 300):
        ws, connected, code = await _open(guess)
        assert not connected and code == 4404, guess


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_websocket_from_another_site_is_refused():
    group, members = await adb(make_group)()
    ws, connected, _ = await _open(members[0].token, origin=b"https://evil.example")
    assert not connected
    ws, connected, _ = await _open(members[0].token)
    assert connected
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_socket_only_ever_writes_as_its_own_participant():
    """Fields naming someone else (participant ids, tokens, group ids) are refused or ignored."""
    def two_groups():
        group_a, members_a = make_group()
        return (group_a, members_a), make_group(group_a.study)

    (group_a, members_a), (group_b, members_b) = await adb(two_groups)()
    assert group_a.pk != group_b.pk
    me, other = members_a[0], members_b[0]
    ws, connected, _ = await _open(me.token)
    assert connected
    snap = await _next(ws, "snapshot")
    assert snap["group"]["id"] == group_a.pk
    for extra in ({"participant_id": other.pk}, {"token": other.token}, {"group": group_b.pk},
                  {"group_id": group_b.pk}):
        await ws.send_to(text_data=json.dumps({"type": "submit_opinion", "text": OPINIONS[0], **extra}))
        assert (await _next(ws, "error"))["code"] == "invalid"
    await ws.send_to(text_data=json.dumps({"type": "submit_opinion", "text": OPINIONS[0], "ref": "mine"}))
    ack = await _next(ws, "ack")
    assert ack["ref"] == "mine" and ack["created"] is True
    stored = await adb(lambda: list(Opinion.objects.values_list("participant_id", "group_id")))()
    assert stored == [(me.pk, group_a.pk)]
    # the other group saw nothing of it: its members' snapshots show no submissions
    other_snap = await adb(participant_snapshot)(other)
    assert not any(m["submitted"] for m in other_snap["group"]["members"])
    assert OPINIONS[0] not in json.dumps(other_snap)
    await ws.disconnect()


# --- join rate limit ----------------------------------------------------------------------------
def test_client_ip_trusts_forwarded_for_only_as_configured():
    meta = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.9"}
    assert client_ip(meta, 0) == "10.0.0.2"  # header ignored unless a proxy is configured
    assert client_ip(meta, 1) == "203.0.113.9"  # the hop our proxy appended, not the client's own text
    assert client_ip(meta, 2) == "6.6.6.6"
    assert client_ip(meta, 3) == "10.0.0.2"  # fewer hops than proxies: fall back to the socket address
    assert client_ip({}, 1) == "unknown"


@pytest.mark.django_db
def test_join_rate_window_counts_and_resets():
    assert all(join_rate_allowed("198.51.100.1", limit=3, window_seconds=60, now=1200.0) for _ in range(3))
    assert not join_rate_allowed("198.51.100.1", limit=3, window_seconds=60, now=1201.0)
    assert join_rate_allowed("198.51.100.2", limit=3, window_seconds=60, now=1201.0)  # another address
    assert join_rate_allowed("198.51.100.1", limit=3, window_seconds=60, now=1260.0)  # next window
    assert join_rate_allowed("198.51.100.1", limit=0, window_seconds=60)  # 0 = off


@pytest.mark.django_db
def test_joins_over_the_limit_get_429_but_returning_participants_resume(settings):
    settings.JOIN_RATE_LIMIT = 3
    settings.JOIN_RATE_WINDOW_SECONDS = 60
    settings.TRUSTED_PROXY_COUNT = 1
    make_study(slug="s1")
    behind_proxy = {"REMOTE_ADDR": "10.0.0.2"}

    def browser(forwarded="203.0.113.7"):
        return Client(**behind_proxy, HTTP_X_FORWARDED_FOR=forwarded)

    first = browser()
    resumed = join_and_consent(first, "/s/s1/?PROLIFIC_PID=early&SESSION_ID=e")["Location"]
    for i in range(2):
        assert join_and_consent(browser(), f"/s/s1/?PROLIFIC_PID=n{i}&SESSION_ID=s").status_code == 302
    blocked = join_and_consent(browser(), "/s/s1/?PROLIFIC_PID=late&SESSION_ID=s")
    assert blocked.status_code == 429 and blocked["Retry-After"] == "60"
    assert b"wait a minute" in blocked.content and b"progress is kept" in blocked.content
    assert not Participant.objects.filter(recruitment_id="late").exists()
    # a client writing its own X-Forwarded-For cannot escape: our proxy's hop is the one counted
    assert join_and_consent(browser("1.2.3.4, 203.0.113.7"), "/s/s1/?PROLIFIC_PID=x&SESSION_ID=s").status_code == 429
    # returning participants are not blocked: same PROLIFIC_PID and SESSION_ID from anywhere, or the cookie
    assert browser().get("/s/s1/?PROLIFIC_PID=early&SESSION_ID=e")["Location"] == resumed
    assert first.get("/s/s1/")["Location"] == resumed
    # another address still gets in
    assert join_and_consent(browser("198.51.100.4"), "/s/s1/?PROLIFIC_PID=else&SESSION_ID=s").status_code == 302
    assert Participant.objects.count() == 4
