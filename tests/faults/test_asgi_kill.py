"""kill -9 the ASGI server (daphne) during a rating phase with 100 bots connected, start it again on the
same port: every bot reconnects and finishes, and the database holds exactly the opinions, ratings and
critiques the bots logged as stored (acked, shown as submitted after the reconnect, or sent unanswered and
found verbatim: the ack died with the server) — none lost, none duplicated."""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter

import pytest
from django.conf import settings
from django.db import connection

from bots.client import BotConfig, run_bots
from deliberation.models import Group, Rating
from participants.models import Participant

from ..e2e.stack import Stack, database_url
from ..factories import make_study
from ..waiting import wait_for
from .ledger import compare

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
BOTS = 100
GROUP_SIZE = 5
PHASE_SECONDS = 180  # far beyond the test: nothing may be stored by a deadline


def state_of(study, stack: Stack) -> str:
    """What the study looks like (for a failure message): groups by phase, participants by status, the
    servers' last log lines."""
    groups = list(Group.objects.filter(study=study).order_by("id").values_list("id", "phase", "version"))
    statuses = Counter(Participant.objects.filter(study=study).values_list("status", flat=True))
    logs = {path.name: path.read_text()[-1500:] for path in sorted(stack.log_dir.glob("*.log"))}
    return (f"groups (id, phase, version): {groups}; participants: {dict(statuses)}; "
            f"ratings: {Rating.objects.count()}; logs: {logs}")


def test_daphne_killed_mid_rating_loses_and_duplicates_nothing(tmp_path):
    study = make_study(slug="asgi-kill", generation_backend="extractive", max_group_size=GROUP_SIZE,
                       min_group_size=GROUP_SIZE, num_candidates=2, opinion_seconds=PHASE_SECONDS,
                       rating_seconds=PHASE_SECONDS, critique_seconds=PHASE_SECONDS,
                       final_rating_seconds=PHASE_SECONDS, lobby_timeout_seconds=PHASE_SECONDS)
    groups = Group.objects.filter(study=study)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    started = time.monotonic()
    with Stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path) as stack:
        config = BotConfig(server=stack.base, study=study.slug, participants=BOTS, seed=6, think=(0.4, 1.6),
                           ping_seconds=5.0, timeout=300.0, stagger=0.03, progress=False, run_id="asgikill")
        box: dict = {}
        bots = threading.Thread(target=lambda: box.update(summary=run_bots(config)), daemon=True)
        bots.start()

        # Kill once everyone is in and some groups are rating (with ratings already stored in some).
        def rating_under_way() -> bool:
            return (Participant.objects.filter(study=study).count() == BOTS
                    and groups.filter(phase="rating").count() >= 3 and Rating.objects.exists())
        wait_for(rating_under_way, 150, "groups in the rating phase", poll=0.05,
                 explain=lambda: state_of(study, stack))
        rating_groups = groups.filter(phase="rating").count()
        ratings_before = Rating.objects.count()
        # Who is in a group (so has a socket) when the server dies: on a fast run an early group may be done
        # already, and the last arrivals may still be joining over HTTP.
        in_session = set(Participant.objects.filter(study=study, status=Participant.Status.IN_GROUP)
                         .values_list("recruitment_id", flat=True))
        stack.kill("daphne")
        killed = time.monotonic()
        stack.start("daphne")
        serving = time.monotonic() - killed
        # Recovered: a write lands after the restart.
        wait_for(lambda: Rating.objects.count() > ratings_before or not groups.exclude(phase="done").exists(),
                 60, "a rating stored after the restart", explain=lambda: state_of(study, stack))
        first_write = time.monotonic() - killed
        bots.join(timeout=300)
        assert not bots.is_alive(), "bots did not finish"
    elapsed = time.monotonic() - started
    summary = box["summary"]
    (tmp_path / "summary.json").write_text(json.dumps(summary, default=str))
    stuck = [(b["index"], b["status"], b["group_id"], b["reconnects"],
              [(w["phase"], w["outcome"]) for w in b["writes"]])
             for b in summary["bots"] if b["status"] != "completed"]
    print("groups:", list(groups.values_list("id", "phase", "outcome")), "stuck bots:", stuck[:10])

    assert not summary["failures"], summary["failures"][:5]
    assert summary["participants_started"] == BOTS
    assert summary["completed"] == BOTS, {k: summary[k] for k in ("completed", "dropped", "unfinished")}
    assert len(in_session) >= 3 * GROUP_SIZE, f"only {len(in_session)} bots were in a group at the kill"
    assert all(b["reconnects"] >= 1 for b in summary["bots"] if b["pid"] in in_session), \
        "a bot that was in a group at the kill never lost its socket"
    assert {b["completion_page_code"] for b in summary["bots"]} == {"DONE123"}
    assert summary["unmatched_acks"] == 0
    assert groups.count() == BOTS // GROUP_SIZE
    assert set(groups.values_list("phase", "outcome")) == {("done", "completed")}

    with connection.cursor() as cursor:
        ledger = compare(summary["bots"], cursor, study.pk)
    assert ledger["lost"] == [] and ledger["duplicated"] == [] and ledger["unlogged"] == [], ledger
    assert ledger["by_timeout"] == {} or not any(ledger["by_timeout"].values()), ledger["by_timeout"]
    # Every bot: one opinion, one critique, one rating set per round; exactly as its log says.
    assert ledger["by_kind"] == {"opinion": BOTS, "critique": BOTS, "rating": BOTS, "final_rating": BOTS}
    assert ledger["db_writes"] == ledger["logged_writes"] == 4 * BOTS
    assert ledger["db_rating_rows"] == ledger["logged_rating_rows"] == Rating.objects.count()
    print(f"\nASGI kill -9 during rating ({rating_groups} groups rating, {ratings_before} rating rows stored): "
          f"{summary['completed']}/{BOTS} bots completed, {summary['reconnects']} reconnects; writes in DB "
          f"{ledger['db_writes']} = bots' logs {ledger['logged_writes']} (rating rows {ledger['db_rating_rows']} = "
          f"{ledger['logged_rating_rows']}), lost 0, duplicated 0; outcomes {ledger['outcomes']}, "
          f"acks lost {ledger['acks_lost']}; daphne serving "
          f"again {serving:.1f} s after the kill, first write {first_write:.1f} s; total {elapsed:.0f} s")
