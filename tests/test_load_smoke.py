"""benchmarks/load.py end to end at toy size: 20 bots on the production-style stack (daphne, Redis layer,
PostgreSQL, Celery with the recorded backend) and the raw ceiling. No timing assertions: this checks that
latencies get measured, that nothing is lost, and that pushes dropped on purpose are repaired by the
snapshot protocol (stale ping -> fresh snapshot) so every group still finishes."""
from __future__ import annotations

import importlib.util

import pytest
from django.conf import settings
from django.db import connection

from tests.e2e.stack import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)


def load_module():
    spec = importlib.util.spec_from_file_location("load_benchmark", ROOT / "benchmarks" / "load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_twenty_bots_lose_nothing_and_dropped_pushes_are_repaired(tmp_path):
    load = load_module()
    load.raise_fd_limit()
    run = load.run_production(20, 1, db_url=database_url(connection.settings_dict), redis_url=settings.REDIS_URL,
                              work=tmp_path, think=(0.1, 0.4), ping_seconds=2.0, phase_seconds=20,
                              critique_round=False, timeout=60, drop_share=0.3, ramp_seconds=1.0)
    assert run["state"]["lost_state"] == 0, run["state"]
    assert run["state"]["groups"] == 4 and run["state"]["participants"] == 20
    assert run["errors"] == 0, (run["error_codes"], run["failures"])
    # 4 groups x 5 members x 4 phase changes, less the ones whose push was dropped on purpose
    assert run["latency"]["count"] >= 20 and run["latency"]["p99_ms"] > 0
    assert run["pushes_dropped_on_purpose"] > 0
    assert run["missed_pushes_repaired"] > 0 and run["repair_latency"]["count"] > 0
    assert run["db_queries"] > 0 and run["db_queries_per_action"] > 0
    assert run["server_cpu_s"]["daphne"] > 0 and run["daphne_rss_peak_mb"] > 0

    raw = load.run_raw(20, 1, redis_url=settings.REDIS_URL, work=tmp_path, duration=2.0)
    assert raw["connected"] == 20 and raw["errors"] == 0 and raw["lost_messages"] == 0
    assert raw["latency"]["count"] >= 20

    report = {"runs": [run, raw]}
    report["targets"] = load.targets(report["runs"])
    assert "| production | 1 | 20 |" in load.markdown(report)
