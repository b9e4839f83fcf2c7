"""Simulated participants (run_bots) are marked ``is_simulated`` by a signed token on the join link; people
cannot mark themselves, and a bad token is refused without creating anyone."""
from __future__ import annotations

import asyncio
import io
import random
from urllib.parse import urlencode

import httpx
import pytest
from django.core import signing
from django.core.management import call_command

from bots.client import Bot, BotConfig
from bots.sources import opinion_source
from participants.models import Participant
from participants.services import SIMULATED_SALT, simulated_join_token

from ..factories import make_study
from ..joining import join_and_consent

pytestmark = pytest.mark.django_db


def test_a_signed_bot_token_marks_the_participant_simulated_and_is_not_stored(client):
    make_study(slug="s1")
    token = simulated_join_token("s1")
    response = join_and_consent(client, "/s/s1/?" + urlencode({"PROLIFIC_PID": "bot-1", "SIMULATED": token}))
    assert response.status_code == 302
    bot = Participant.objects.get()
    assert bot.is_simulated and "SIMULATED" not in bot.url_params
    client.cookies.clear()
    join_and_consent(client, "/s/s1/?PROLIFIC_PID=person-1")
    assert not Participant.objects.get(recruitment_id="person-1").is_simulated
    assert list(Participant.objects.human().values_list("recruitment_id", flat=True)) == ["person-1"]
    assert Participant.objects.human(include_simulated=True).count() == 2


@pytest.mark.parametrize("forged", [
    "yes", "1", lambda: simulated_join_token("other-study"),
    lambda: signing.dumps("s1", salt=SIMULATED_SALT, key="not-the-server-key"),
    lambda: signing.dumps("s1", salt="another.salt"),
])
def test_a_forged_or_foreign_token_is_refused_and_nobody_is_created(client, forged):
    make_study(slug="s1")
    value = forged() if callable(forged) else forged
    link = "/s/s1/?" + urlencode({"PROLIFIC_PID": "p1", "SIMULATED": value})
    response = client.get(link)
    assert response.status_code == 403 and b"simulated-participant token" in response.content
    posted = client.post(link, {"consent": "yes"})  # straight to the consent POST: refused the same way
    assert posted.status_code == 403 and b"simulated-participant token" in posted.content
    assert not Participant.objects.exists()


def test_an_expired_token_is_refused(client):
    make_study(slug="s1")
    token = simulated_join_token("s1")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("participants.services.SIMULATED_TOKEN_MAX_AGE", -1)
        assert client.get("/s/s1/", {"SIMULATED": token}).status_code == 403
        assert client.post("/s/s1/?" + urlencode({"SIMULATED": token}), {"consent": "yes"}).status_code == 403
    assert not Participant.objects.exists()


def test_run_bots_gives_its_bots_a_valid_token_for_the_study(monkeypatch):
    seen = {}

    def fake_run_bots(config):
        seen["config"] = config
        return {"participants_started": 0, "completed": 0, "dropped": 0, "lobby_timeout": 0, "unfinished": 0,
                "screened_out": 0, "questionnaires": 0,
                "writes_acknowledged": 0, "writes_sent": 0, "errors_received": 0, "error_codes": {},
                "seconds": 0, "failures": []}

    monkeypatch.setattr("bots.management.commands.run_bots.run_bots", fake_run_bots)
    call_command("run_bots", "--study", "s1", "--participants", "1", "--no-progress", stdout=io.StringIO())
    token = seen["config"].simulated_token
    assert signing.loads(token, salt=SIMULATED_SALT) == "s1"


def test_a_bot_sends_its_token_on_the_join_link():
    urls = []

    def server(request: httpx.Request) -> httpx.Response:
        urls.append(request.url)
        if request.url.path.startswith("/s/"):
            return httpx.Response(302, headers={"Location": "/p/abcdefghijklmnopqrstuvwx/"})
        return httpx.Response(200, text="study page")

    async def join():
        bot = Bot(0, BotConfig(server="http://testserver", study="s1", simulated_token="signed"),
                  opinion_source("question"), random.Random(0), "run")
        async with httpx.AsyncClient(transport=httpx.MockTransport(server), follow_redirects=True) as client:
            await bot.join(client)

    asyncio.run(join())
    assert urls[0].params["SIMULATED"] == "signed" and urls[0].params["PROLIFIC_PID"] == "bot-run-0"
