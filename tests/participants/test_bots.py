"""Bots against the real stack (daphne + a Celery worker with beat, on the test database): they join
over HTTP, consent with the CSRF token, talk the websocket protocol and finish; the database must
agree with what the bots say was acknowledged."""
from __future__ import annotations

import io
import json
import time

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from deliberation.models import Candidate, Critique, Draft, Group, Opinion, Rating
from participants.models import Participant

from ..e2e.stack import database_url, running_stack
from ..factories import make_study

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def run_bots(base: str, slug: str, *extra: str) -> dict:
    out = io.StringIO()
    call_command("run_bots", "--study", slug, "--participants", "6", "--server", base, "--json", "--no-progress",
                 "--think", "0.1:0.6", "--stagger", "0.1", "--timeout", "240", *extra, stdout=out)
    summary = json.loads(out.getvalue())
    print(json.dumps({k: v for k, v in summary.items() if k != "bots"}))  # shown with pytest -s
    return summary


def short_study(slug: str, seconds: int):
    return make_study(slug=slug, generation_backend="extractive", max_group_size=3, min_group_size=3,
                      num_candidates=2, opinion_seconds=seconds, rating_seconds=seconds,
                      critique_seconds=seconds, final_rating_seconds=seconds, lobby_timeout_seconds=120)


def by_kind(summary: dict, kind: str) -> dict:
    return summary["by_kind"].get(kind, {"sent": 0, "acknowledged": 0, "created": 0, "rows": 0, "errors": 0})


def test_six_bots_finish_two_groups_and_every_write_is_stored_once(tmp_path):
    study = short_study("bots", 60)
    started = time.monotonic()
    with running_stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path) as base:
        summary = run_bots(base, "bots", "--seed", "7")
    elapsed = time.monotonic() - started
    assert not summary["failures"], summary["failures"]
    assert summary["participants_started"] == 6 and summary["completed"] == 6, summary
    assert summary["dropped"] == summary["lobby_timeout"] == summary["unfinished"] == 0
    assert summary["errors_received"] == 0, summary["error_codes"]
    assert summary["unmatched_acks"] == 0
    assert summary["writes_acknowledged"] == summary["writes_sent"] > 0

    groups = list(Group.objects.filter(study=study))
    assert len(groups) == 2
    assert all(g.phase == "done" and g.outcome == "completed" for g in groups)
    people = list(Participant.objects.filter(study=study))
    assert len(people) == 6 and {p.recruitment_id[:4] for p in people} == {"bot-"}
    assert all(p.is_simulated and "SIMULATED" not in p.url_params for p in people)  # run_bots marks its bots
    # each bot was created by its consent POST, with the consent version and hash it was shown
    assert all(p.consent_version == 1 and len(p.consent_sha256) == 64 for p in people)
    assert all(p.status == "completed" and p.completion_code == "DONE123" for p in people)
    assert {b["completion_page_code"] for b in summary["bots"]} == {"DONE123"}
    assert summary["completion_codes"] == {"DONE123": 6}

    for p in people:  # exactly once, by the bot itself (not stored from a draft at a deadline)
        assert Opinion.objects.filter(participant=p, by_timeout=False).count() == 1
        assert Critique.objects.filter(participant=p, by_timeout=False).count() == 1
        for round_ in (1, 2):
            n = Candidate.objects.filter(group=p.group, round=round_).count()
            assert n >= 1
            ratings = Rating.objects.filter(participant=p, round=round_)
            assert ratings.count() == n and not ratings.filter(by_timeout=True).exists()
            assert sorted(ratings.values_list("rank", flat=True)) == list(range(1, n + 1))
    assert not Opinion.objects.filter(by_timeout=True).exists()

    # What the bots saw acknowledged as created is exactly what the database holds.
    assert by_kind(summary, "opinion")["created"] == Opinion.objects.count() == 6
    assert by_kind(summary, "critique")["created"] == Critique.objects.count() == 6
    assert by_kind(summary, "rating")["rows"] == Rating.objects.filter(round=1).count()
    assert by_kind(summary, "final_rating")["rows"] == Rating.objects.filter(round=2).count()
    assert by_kind(summary, "rating")["created"] == by_kind(summary, "final_rating")["created"] == 6
    for kind in ("opinion", "critique", "rating", "final_rating"):
        k = by_kind(summary, kind)
        assert k["sent"] == k["acknowledged"] == k["created"] == 6, (kind, k)
    assert elapsed < 180


def test_bots_that_drop_out_do_not_stop_their_groups(tmp_path):
    study = short_study("bots-drop", 20)
    started = time.monotonic()
    with running_stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path) as base:
        summary = run_bots(base, "bots-drop", "--seed", "3", "--dropout", "0.5", "--rating-policy", "random")
    elapsed = time.monotonic() - started
    assert not summary["failures"], summary["failures"]
    assert 0 < summary["dropped_by_bots"] < 6, summary
    assert summary["unfinished"] == 0 and summary["lobby_timeout"] == 0
    assert summary["completed"] == 6 - summary["dropped_by_bots"]
    assert summary["unmatched_acks"] == 0

    groups = list(Group.objects.filter(study=study))
    assert len(groups) == 2 and all(g.phase == "done" and g.finished_at for g in groups), \
        [(g.phase, g.outcome) for g in groups]
    bots = {b["pid"]: b for b in summary["bots"]}
    for p in Participant.objects.filter(study=study):
        bot = bots[p.recruitment_id]
        if bot["dropped_by_bot"]:
            assert p.status == "dropped" and p.completion_code == "DROP7", (bot, p.status)
        else:
            assert p.status == "completed" and p.completion_code == "DONE123", (bot, p.status)
            assert bot["completion_page_code"] == "DONE123"
        # Never more than one of anything per member, whatever the dropping did.
        assert Opinion.objects.filter(participant=p).count() <= 1
        assert Critique.objects.filter(participant=p).count() <= 1
    assert by_kind(summary, "opinion")["created"] == Opinion.objects.filter(by_timeout=False).count()
    assert by_kind(summary, "critique")["created"] == Critique.objects.filter(by_timeout=False).count()
    assert by_kind(summary, "rating")["rows"] == Rating.objects.filter(round=1, by_timeout=False).count()
    assert by_kind(summary, "final_rating")["rows"] == Rating.objects.filter(round=2, by_timeout=False).count()
    assert elapsed < 200


def test_human_typing_model_sends_one_draft_per_pause_and_the_pages_draft_before_submitting(tmp_path):
    """``--typing-pauses 3:3 --draft-on-submit`` (the load benchmark's human pace): per input phase, three drafts
    of what was typed (or rated) by each pause and the whole answer right before the submission, as the page does.
    The server acknowledges each, and the last draft of each phase is the submitted answer."""
    study = short_study("bots-typing", 60)
    with running_stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path) as base:
        out = io.StringIO()
        call_command("run_bots", "--study", "bots-typing", "--participants", "3", "--server", base, "--json",
                     "--no-progress", "--think", "0.1:0.4", "--stagger", "0.1", "--timeout", "240", "--seed", "5",
                     "--typing-pauses", "3:3", "--draft-on-submit", stdout=out)
        summary = json.loads(out.getvalue())
    assert not summary["failures"], summary["failures"]
    assert summary["completed"] == 3 and summary["errors_received"] == 0, summary
    drafts = by_kind(summary, "draft")
    assert drafts["sent"] == 3 * 4 * (3 + 1), drafts  # 3 bots x 4 input phases x (3 pauses + the submit's draft)
    assert drafts["acknowledged"] == drafts["sent"] and drafts["errors"] == 0, drafts
    group = Group.objects.get(study=study)
    for p in Participant.objects.filter(study=study):
        opinion = Opinion.objects.get(participant=p)
        assert not opinion.by_timeout
        assert Draft.objects.get(participant=p, group=group, phase="opinion").payload["text"] == opinion.text
        rated = Draft.objects.get(participant=p, group=group, phase="rating").payload["ratings"]
        assert len(rated) == Candidate.objects.filter(group=group, round=1).count()  # the whole rating at the end


def test_typing_pauses_option_refuses_bad_values():
    from django.core.management.base import CommandError

    for bad in ("0:2", "3:2", "x", "1:99"):
        with pytest.raises(CommandError, match="typing-pauses"):
            call_command("run_bots", "--study", "s", "--participants", "1", "--typing-pauses", bad)
    with pytest.raises(CommandError, match="--ping"):
        call_command("run_bots", "--study", "s", "--participants", "1", "--ping", "0")
