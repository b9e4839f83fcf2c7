"""Restart PostgreSQL mid-session: the stack runs on a private PostgreSQL cluster, which is crashed
(``pg_ctl stop -m immediate``: every backend killed at once, crash recovery on start) while groups are
rating and started again. Connections in daphne, the worker and beat must recover, and the session must
complete with every write stored once."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

import psycopg
import pytest
from django.conf import settings

from bots.client import BotConfig, run_bots

from ..e2e.services import private_postgres
from ..e2e.stack import ROOT, Stack
from ..waiting import wait_for as _wait_for
from .ledger import compare

pytestmark = [pytest.mark.slow]
BOTS = 6
MAKE_STUDY = """
from tests.factories import make_study
s = make_study(slug="pg-restart", generation_backend="extractive", max_group_size=3, min_group_size=3,
               num_candidates=2, opinion_seconds=150, rating_seconds=150, critique_seconds=150,
               final_rating_seconds=150, lobby_timeout_seconds=150)
print(s.pk)
"""


def wait_for(predicate, timeout: float, what: str, poll: float = 0.1) -> float:
    """``tests.waiting.wait_for`` that keeps polling while PostgreSQL is down."""
    return _wait_for(predicate, timeout, what, poll=poll, ignore=(psycopg.OperationalError,))


def manage(db_url: str, *args: str) -> str:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": db_url,
           "REDIS_URL": settings.REDIS_URL}
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_session_survives_a_postgres_restart(tmp_path):
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with private_postgres() as pg:
        manage(pg.url, "migrate", "--no-input", "-v", "0")
        study_id = int(manage(pg.url, "shell", "-c", MAKE_STUDY).split()[-1])

        def query(sql: str):
            with psycopg.connect(pg.url.replace("postgres://", "postgresql://"), connect_timeout=2) as conn:
                return conn.execute(sql, [study_id]).fetchall()

        def count_ratings() -> int:
            return query("SELECT count(*) FROM deliberation_rating r JOIN deliberation_group g ON g.id = r.group_id "
                         "WHERE g.study_id = %s")[0][0]

        with Stack(pg.url, settings.REDIS_URL, tmp_path) as stack:
            config = BotConfig(server=stack.base, study="pg-restart", participants=BOTS, seed=5, think=(1.0, 3.0),
                               ping_seconds=5.0, timeout=200.0, stagger=0.1, progress=False, run_id="pg")
            box: dict = {}
            bots = threading.Thread(target=lambda: box.update(summary=run_bots(config)), daemon=True)
            bots.start()
            wait_for(lambda: query("SELECT 1 FROM deliberation_group WHERE study_id = %s AND phase = 'rating'"), 120,
                     "a group in the rating phase", poll=0.05)
            phases = sorted(p for (p,) in query("SELECT phase FROM deliberation_group WHERE study_id = %s"))
            ratings_before = count_ratings()
            down = pg.restart("immediate", down=2.0)
            recovered = wait_for(lambda: count_ratings() > ratings_before, 90, "a rating stored after the restart")
            bots.join(timeout=220)
            assert not bots.is_alive(), "bots did not finish"
        summary = box["summary"]
        outcomes = query("SELECT phase, outcome FROM deliberation_group WHERE study_id = %s")
        with psycopg.connect(pg.url.replace("postgres://", "postgresql://")) as conn, conn.cursor() as cursor:
            ledger = compare(summary["bots"], cursor, study_id)
        rating_rows = count_ratings()

    assert not summary["failures"], summary["failures"]
    assert summary["completed"] == BOTS, [(b["index"], b["status"]) for b in summary["bots"]]
    assert len(outcomes) == BOTS // 3 and set(outcomes) == {("done", "completed")}, outcomes
    assert ledger["lost"] == [] and ledger["duplicated"] == [] and ledger["unlogged"] == [], ledger
    assert not any(ledger["by_timeout"].values()), ledger["by_timeout"]
    assert ledger["db_writes"] == ledger["logged_writes"] == 4 * BOTS
    assert ledger["db_rating_rows"] == ledger["logged_rating_rows"] == rating_rows
    print(f"\nPostgreSQL crash-restart (groups {phases}; server down {down:.1f} s): {summary['completed']}/{BOTS} bots "
          f"completed, {summary['reconnects']} reconnects, errors {summary['error_codes']}; writes in DB "
          f"{ledger['db_writes']} = bots' logs {ledger['logged_writes']}, lost 0, duplicated 0; first rating stored "
          f"{recovered:.1f} s after PostgreSQL was back; session {summary['seconds']} s")


def test_generation_task_is_retried_when_the_database_is_unreachable(monkeypatch):
    """The restart test only hits this when a task runs exactly while PostgreSQL is down; here it is forced:
    a task failing with OperationalError must be retried, not acked as failed (the group would wait forever)."""
    from django.db import OperationalError

    from generation import tasks

    def database_down(**kwargs):
        raise OperationalError("connection failed: Connection refused")

    retries = []

    def retry(exc=None, countdown=None, **kwargs):
        retries.append((type(exc).__name__, countdown))
        return RuntimeError("retry scheduled")

    monkeypatch.setattr(tasks, "candidates_generate", database_down)
    monkeypatch.setattr(tasks.generate_candidates, "retry", retry)
    with pytest.raises(RuntimeError, match="retry scheduled"):
        tasks.generate_candidates.run(group_id=1, round=1)
    assert retries == [("OperationalError", 5)]
