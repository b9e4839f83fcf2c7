"""Nothing typed is lost in the browser (issue 15 item 6), in real headless Chromium against the ASGI server and a
Celery worker: the server is killed (-9) in the middle of submissions and started again on the same port.

Four members of one group, each covering one way text was lost before:
- A's opinion is stored, but the ack never reaches the page (dropped on its way, then the server dies): after the
  restart the page resends it with the same ref and gets the original ack; the opinion is stored once.
- C's submission is in the middle of its transaction (its receipt INSERT waits on a table lock) when C reloads
  the page, the reloaded page sends it again (same ref; it waits behind the first), and then the server is killed.
  The reloaded page held the text and the same ref (sessionStorage); after the restart it sends them again:
  stored once.
- B types while the server is down: the draft is sent on reconnect.
- D presses Submit while the server is down: the submission is kept and sent on reconnect (before, the button
  stayed disabled and nothing was sent).
Every page then goes on to the rating phase.
"""
from __future__ import annotations

import json
import re
import time

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from deliberation.models import Draft, Group, Opinion, SubmissionReceipt
from participants.models import Participant

from ..factories import make_study
from .browser import chromium, join_and_consent, phone_pages
from .stack import Stack, database_url

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEXTS = {
    "A": "Basic food should carry no tax at all, because poor families spend most of their money on it.",
    "B": "Keep the tax but give every household a yearly refund that covers the tax on basic groceries.",
    "C": "Remove the tax on bread, milk and vegetables, and raise it on sugary drinks to pay for that.",
    "D": "Schools need this revenue; a lower rate on basic food is a fairer middle ground than none.",
}
STORED = ("() => { const k = Object.keys(sessionStorage).find(k => k.startsWith('participant:'));"
          " return k ? JSON.parse(sessionStorage.getItem(k)) : null; }")


def wait_for(page, predicate, timeout: float, what: str):
    """Poll ``predicate``; waiting through ``page`` lets Playwright run the websocket route's handlers meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(200)
    raise AssertionError(f"timed out waiting for {what}")


def lock_waiters(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock'").fetchone()[0]


def test_killed_server_mid_submit_nothing_lost_nothing_doubled_and_the_group_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM checks beside Playwright's sync API
    study = make_study(slug="outage", min_group_size=4, max_group_size=4, opinion_seconds=900,
                       rating_seconds=900, generation_backend="extractive", num_candidates=2)
    db_url = database_url(connection.settings_dict)
    routed = {"submit_ref": None, "acks": [], "drop": True}

    def route_a(ws):
        """A's websocket through Playwright: everything is forwarded, except the first ack of its submission."""
        server = ws.connect_to_server()

        def from_page(message):
            data = json.loads(message)
            if data.get("type") == "submit_opinion":
                routed["submit_ref"] = data["ref"]
            server.send(message)

        def from_server(message):
            data = json.loads(message)
            if data.get("type") == "ack" and data.get("ref") and data["ref"] == routed["submit_ref"]:
                routed["acks"].append(data)
                if routed["drop"]:
                    routed["drop"] = False
                    return  # lost on its way: the page never sees it
            ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    with Stack(db_url, settings.REDIS_URL, tmp_path) as stack, chromium() as browser:
        a, b, c, d = pages = phone_pages(browser, 4)
        a.route_web_socket(re.compile(r".*/ws/p/.*"), route_a)
        join_and_consent(pages, stack.base, "outage", prefix="out")
        for page in pages:
            page.wait_for_selector("#opinion-form", timeout=60_000)
        people = {name: Participant.objects.get(recruitment_id=f"out-{i}") for i, name in enumerate("ABCD")}
        group = Group.objects.get(study=study)

        # A: stored, ack lost.
        a.fill("#opinion-text", TEXTS["A"])
        a.click("#opinion-submit")
        wait_for(a, lambda: routed["acks"], 30, "A's submission to be stored and its ack dropped")
        assert Opinion.objects.filter(participant=people["A"]).count() == 1
        assert a.evaluate(STORED)["outbox"]["submit"]["message"]["ref"] == routed["submit_ref"]  # still unsent

        # C: in the middle of its transaction when the page reloads and the server dies.
        c.fill("#opinion-text", TEXTS["C"])
        with psycopg.connect(db_url) as blocker:
            blocker.execute("LOCK TABLE deliberation_submissionreceipt IN SHARE MODE")  # submissions wait mid-way
            c.click("#opinion-submit")
            wait_for(c, lambda: lock_waiters(db_url) >= 1, 30, "C's submission to wait on the lock")
            ref_c = c.evaluate(STORED)["outbox"]["submit"]["message"]["ref"]
            c.reload()
            c.wait_for_selector("#opinion-form", timeout=30_000)
            stored = c.evaluate(STORED)
            assert stored["outbox"]["submit"]["message"] == {"type": "submit_opinion", "text": TEXTS["C"], "ref": ref_c}
            assert c.input_value("#opinion-text") == TEXTS["C"]
            wait_for(c, lambda: lock_waiters(db_url) >= 2, 30, "the reloaded page's copy to wait behind the first")
            stack.kill("asgi")
            blocker.rollback()
        assert not Opinion.objects.filter(participant=people["C"]).exists()  # the killed transaction left nothing

        # Server down. B types (the draft is kept); D presses Submit (kept, and the button comes back).
        b.wait_for_selector("#connection.bad", timeout=10_000)
        b.fill("#opinion-text", TEXTS["B"])
        b.wait_for_timeout(1600)  # the page's draft timer fires while disconnected
        assert [m["text"] for m in b.evaluate(STORED)["outbox"]["drafts"].values()] == [TEXTS["B"]]
        d.fill("#opinion-text", TEXTS["D"])
        d.click("#opinion-submit")
        assert "Not connected" in d.inner_text("#error")
        assert d.is_enabled("#opinion-submit")
        assert not Draft.objects.filter(participant=people["B"], payload__text=TEXTS["B"]).exists()

        stack.start("asgi")  # same port; the pages reconnect by themselves

        wait_for(b, lambda: Draft.objects.filter(participant=people["B"], payload__text=TEXTS["B"]).exists(), 60,
                 "B's draft typed while disconnected to reach the server")
        b.wait_for_selector("#connection.ok", timeout=30_000)
        b.click("#opinion-submit")
        for page in pages:
            page.wait_for_selector("#rating-form", timeout=180_000)

    for name, participant in people.items():
        opinions = list(Opinion.objects.filter(participant=participant).values_list("text", flat=True))
        assert opinions == [TEXTS[name]], name
    assert Opinion.objects.filter(group=group).count() == 4
    # A's resent submission got the original ack (created, same ref) after the first one was lost.
    assert routed["acks"] == [{"type": "ack", "ref": routed["submit_ref"], "created": True}] * 2
    assert set(SubmissionReceipt.objects.filter(participant=people["A"]).values_list("ref", flat=True)) == \
        {routed["submit_ref"]}
    assert set(SubmissionReceipt.objects.filter(participant=people["C"]).values_list("ref", flat=True)) == {ref_c}
    assert Group.objects.get(pk=group.pk).phase == "rating"


def test_a_newer_window_takes_over_and_the_older_one_can_take_it_back(tmp_path, monkeypatch):
    """The socket cap (issue 15 item 5) as a person sees it: with a cap of 1, opening the study in a second tab
    closes the first one's socket (4409); the first tab says why, does not fight back by itself, and its
    *Use this window* button takes the connection back."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    make_study(slug="tabs", min_group_size=3, max_group_size=3)
    db_url = database_url(connection.settings_dict)
    with Stack(db_url, settings.REDIS_URL, tmp_path, worker=False,
               env={"WEBSOCKET_MAX_SOCKETS_PER_PARTICIPANT": "1"}) as stack, chromium() as browser:
        first = phone_pages(browser, 1)[0]
        join_and_consent([first], stack.base, "tabs", prefix="tab")
        first.wait_for_selector("#lobby", timeout=30_000)
        second = first.context.new_page()
        second.goto(first.url)
        second.wait_for_selector("#lobby", timeout=30_000)
        first.wait_for_selector("#replaced", timeout=10_000)
        assert "opened in another window or tab" in first.inner_text("#replaced")
        first.wait_for_timeout(3000)  # no automatic reconnect: the tabs do not take the socket from each other
        assert first.is_visible("#replaced") and second.is_visible("#lobby")
        first.click("#use-here")
        first.wait_for_selector("#lobby", timeout=10_000)
        second.wait_for_selector("#replaced", timeout=10_000)
