"""A study going live: 150 participants open the join link and consent within a second or two. Under ASGI
every request runs on a thread of its own, so without a bound each one holds a PostgreSQL connection of its
own; a burst like this once ran PostgreSQL out of connections ("too many clients") and answered joins with
500s (found by tests/faults/test_asgi_kill.py failing on a busy machine). The ASGI server now reaches
PostgreSQL through a pool (config/asgi.py, DB_POOL_MAX_SIZE): every join succeeds, and the server never
holds more connections than the pool allows."""
from __future__ import annotations

import asyncio
import re
import threading
import time

import httpx
import pytest
from django.conf import settings
from django.db import connection

from participants.models import Participant

from ..e2e.stack import Stack, database_url
from ..factories import make_study

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ARRIVALS = 150
POOL_SIZE = 40  # config/asgi.py's default


APP_NAME = "arrival-burst-asgi"  # the ASGI server's sessions carry it (libpq's PGAPPNAME), so only they are counted


def server_connections(cursor) -> int:
    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                   "AND application_name = %s", [APP_NAME])
    return cursor.fetchone()[0]


async def arrive(client: httpx.AsyncClient, base: str, slug: str, index: int) -> tuple[int, int]:
    """Open the join link and consent, as a browser does: (status of the join page, status after consent)."""
    joined = await client.get(f"{base}/s/{slug}/", params={"PROLIFIC_PID": f"burst{index:04d}",
                                                         "STUDY_ID": "burst", "SESSION_ID": f"s{index}"})
    if joined.status_code != 200 or 'name="consent"' not in joined.text:
        return joined.status_code, 0
    page = str(joined.url)  # the join link itself: its consent POST creates the participant
    digest = re.search(r'name="consent_sha256" value="([0-9a-f]{64})"', joined.text)
    consent = await client.post(page, data={"csrfmiddlewaretoken": client.cookies.get("csrftoken"), "consent": "yes",
                                            "consent_sha256": digest.group(1) if digest else ""},
                                headers={"Referer": page, "Origin": base})
    return joined.status_code, consent.status_code


async def burst(base: str, slug: str) -> list[tuple[int, int]]:
    async def one(index: int) -> tuple[int, int]:
        async with httpx.AsyncClient(follow_redirects=True, timeout=120, trust_env=False) as client:
            return await arrive(client, base, slug, index)

    return await asyncio.gather(*(one(i) for i in range(ARRIVALS)))


def test_a_burst_of_arrivals_all_join_within_the_connection_pool(tmp_path):
    study = make_study(slug="burst", min_group_size=5, max_group_size=5, lobby_timeout_seconds=600,
                       opinion_seconds=600)
    with Stack(database_url(connection.settings_dict), settings.REDIS_URL, tmp_path, worker=False,
               env={"PGAPPNAME": APP_NAME}) as stack:
        with connection.cursor() as cursor:
            baseline = server_connections(cursor)  # the ASGI server's idle pool
        peak, stop = [baseline], threading.Event()

        def watch() -> None:
            from django.db import connection as watcher_connection

            with watcher_connection.cursor() as cursor:
                while not stop.is_set():
                    peak.append(server_connections(cursor))
                    time.sleep(0.02)
            watcher_connection.close()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.monotonic()
        try:
            results = asyncio.run(burst(stack.base, study.slug))
        finally:
            stop.set()
            watcher.join(timeout=10)
        seconds = time.monotonic() - started
        log = (tmp_path / "asgi.log").read_text()

    failed = [(i, r) for i, r in enumerate(results) if r != (200, 200)]
    assert not failed, (failed[:10], log[-3000:])
    assert "too many clients" not in log and "Internal Server Error" not in log, log[-3000:]
    participants = Participant.objects.filter(study=study)
    assert participants.count() == ARRIVALS
    assert set(participants.values_list("recruitment_id", flat=True)) == {f"burst{i:04d}" for i in range(ARRIVALS)}
    assert not participants.filter(consented_at__isnull=True).exists()
    assert max(peak) > 0, "no session of the ASGI server's was counted (PGAPPNAME not applied?)"
    assert max(peak) <= POOL_SIZE, f"the server held {max(peak)} connections at once (pool: {POOL_SIZE})"
    print(f"\n{ARRIVALS} arrivals joined and consented in {seconds:.1f} s; the server held at most {max(peak)} "
          f"PostgreSQL connections (pool {POOL_SIZE}, {len(peak)} samples); 0 errors")
