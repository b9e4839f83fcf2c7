"""benchmarks/load.py end to end at toy size: 20 bots on the production-style stack (config.serve, Redis layer,
PostgreSQL, Celery with the recorded backend) and the raw ceiling. No timing assertions: this checks that
latencies get measured, that nothing is lost, and that pushes dropped on purpose are repaired by the
snapshot protocol (stale ping -> fresh snapshot) so every group still finishes."""
from __future__ import annotations

import importlib.util

import pytest
from django.conf import settings
from django.db import connection

from tests.e2e.stack import ROOT, database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]  # a whole stack and 20 bots


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
    assert run["db_queries_asgi"] > 0  # counted inside the server's workers, whichever way the server starts them
    assert run["server_cpu_s"]["asgi"] > 0 and run["asgi_rss_peak_mb"] > 0
    assert run["pushes_received"] > 0 and run["push_period_s"] > 0 and run["bots_cpu_ms_per_message"] > 0
    # every timed push falls in one 10-s bucket of the run, in order
    buckets = run["latency_over_time"]
    assert sum(count for _, count, _, _ in buckets) == run["latency"]["count"]
    assert [start for start, *_ in buckets] == sorted(start for start, *_ in buckets) and buckets[0][0] >= 0
    assert all(p50 <= p99 for _, _, p50, p99 in buckets)
    gc = run["asgi_gc"]  # timed inside the server's worker
    assert gc["processes"] == 1 and gc["collections"][0] > 0 and gc["pause_s"][0] > 0
    path = run["push_path"]  # each stage of a phase change's push, timed inside the server's processes
    assert path["committed"]["count"] > 0 and path["published"]["count"] == path["committed"]["count"]
    assert path["received"]["count"] >= run["latency"]["count"] and path["sent"]["count"] > 0
    assert path["committed"]["p50_ms_at_most"] <= path["sent"]["p50_ms_at_most"]
    floor = run["db_floor"]  # the database alone, probed on its own connection through the run
    assert floor["failures"] == 0 and floor["transaction"]["count"] > 0 and floor["round_trip"]["count"] > 0
    assert 0 < floor["round_trip"]["p50_ms"] <= floor["transaction"]["p50_ms"]

    raw = load.run_raw(20, 1, redis_url=settings.REDIS_URL, work=tmp_path, duration=2.0,
                       period=run["push_period_s"])
    assert raw["connected"] == 20 and raw["errors"] == 0 and raw["lost_messages"] == 0
    assert raw["latency"]["count"] >= 20

    report = {"runs": [run, raw]}
    report["targets"] = load.targets(report["runs"])
    assert f"| bot | {load.default_server()} | production | 1 | 20 |" in load.markdown(report)


def _run(stack: str, pace: str, n: int, procs: int, p99: float, *, lost: int = 0, unfinished: int = 0,
         errors: int = 0) -> dict:
    return {"stack": stack, "pace": pace, "server": "uvicorn", "n": n, "procs": procs, "errors": errors,
            "messages_per_s": 1.0,
            "latency": {"p50_ms": p99 / 2, "p95_ms": p99, "p99_ms": p99}, "server_cpu_s": {"asgi": 1.0},
            "bots_cpu_s": 1.0, "rss_kb_per_connection": 1.0,
            "state": {"lost_state": lost, "unfinished_groups": unfinished}}


def test_targets_judge_the_human_ladder_and_the_bot_pace_ratio():
    """Issue 16's targets from one invocation's rows: capacity at human pace (p99, errors, finished, lost), the
    2x-raw ratio at every N, 2 processes >= 1.5x of 1, and the bot-pace ratio at N = 500."""
    load = load_module()
    runs = []
    for n in (500, 1000, 2000):
        runs += [_run("raw", "human", n, 1, 10.0), _run("raw", "human", n, 2, 10.0)]
    runs += [_run("production", "human", 500, 1, 15.0), _run("production", "human", 1000, 1, 150.0),
             _run("production", "human", 2000, 1, 900.0),
             _run("production", "human", 500, 2, 12.0), _run("production", "human", 1000, 2, 18.0),
             _run("production", "human", 2000, 2, 19.0)]
    runs += [_run("raw", "bot", 500, 2, 20.0), _run("production", "bot", 500, 2, 90.0)]
    runs[-1]["db_floor"] = {"transaction": {"p99_ms": 50.0}}
    t = load.targets(runs)
    human = t["human"]
    assert human["capacity"]["production_1"] == 500 and human["capacity"]["production_2"] == 2000
    assert human["capacity"]["ratio_2_vs_1"] == 4.0 and human["2_procs_ge_1.5x_of_1"] is True
    assert human["2000_on_2_procs"] is True
    assert human["p99_le_2x_raw_every_n"] is False  # 1 process at N = 1000: 15x the raw consumer
    assert human["by_n"]["n2000_procs2"]["p99_vs_raw"] == 1.9
    assert t["bot"]["n500_p99_le_5x_raw"] is True and t["bot"]["by_n"]["n500_procs2"]["p99_vs_raw"] == 4.5
    assert t["bot"]["by_n"]["n500_procs2"]["db_floor_vs_raw"] == 2.5  # the database alone: 2.5x the raw p99
    assert human["by_n"]["n2000_procs2"]["db_floor_p99_ms"] is None  # a run without the probe
    assert t["zero_lost_state_every_run"] is True

    # One acknowledged answer lost, or one group left unfinished, and that N no longer counts.
    runs[-3] = _run("production", "human", 2000, 2, 19.0, lost=1)
    runs[-4] = _run("production", "human", 1000, 2, 18.0, unfinished=1)
    t = load.targets(runs)
    assert t["human"]["capacity"]["production_2"] == 500 and t["human"]["2000_on_2_procs"] is False
    assert t["human"]["2_procs_ge_1.5x_of_1"] is False and t["zero_lost_state_every_run"] is False
    table = load.markdown({"runs": runs, "targets": t})
    assert "| human | uvicorn | production | 2 | 2000 |" in table and "≥ 2,000 on 2 processes: not met" in table
    # One process and two both holding the ladder's largest N: the ladder cannot compare them (not measured).
    level = [_run("production", "human", n, procs, 50.0) for n in (1000, 2000) for procs in (1, 2)]
    h = load.targets(level)["human"]
    assert h["capacity"]["ratio_2_vs_1"] == 1.0 and h["capacity_above_ladder"] is True
    assert h["2_procs_ge_1.5x_of_1"] is None
    assert "a larger N is needed" in load.markdown({"runs": level, "targets": load.targets(level)})
    level[-1] = _run("production", "human", 2000, 2, 150.0)  # two processes failed what one held: not met
    assert load.targets(level)["human"]["2_procs_ge_1.5x_of_1"] is False
    # Without a bot-pace run at N = 500 that target is not measured, not met.
    assert load.targets([_run("production", "bot", 100, 1, 50.0)])["bot"]["n500_p99_le_5x_raw"] is None


def test_target_mode_measures_a_stack_it_did_not_start(tmp_path):
    """load.py --target against a running server (config.serve + Celery on the test database), twice: a study the
    benchmark makes through the --manage hook, and one the experimenter made that the bots join through its link.
    Latency comes from the server's phase_started_at alone; the state is checked through the hook."""
    import json
    import shlex
    import sys

    from tests.e2e.stack import running_stack
    from tests.factories import make_study

    load = load_module()
    db_url = database_url(connection.settings_dict)
    manage = shlex.join(["env", f"DATABASE_URL={db_url}", f"REDIS_URL={settings.REDIS_URL}",
                         "DJANGO_SETTINGS_MODULE=config.settings.test", sys.executable, "manage.py"])
    make_study("by-hand", min_group_size=5, max_group_size=5, critique_round=False, opinion_seconds=20,
               rating_seconds=20, final_rating_seconds=20)
    with running_stack(db_url, settings.REDIS_URL, tmp_path / "stack") as base:
        for name, study in (("made", []), ("joined", ["--target-study", "by-hand"])):
            load.main(["--target", base + "/", "--manage", manage, *study, "--pace", "bot", "--n", "5",
                       "--no-critique", "--phase-seconds", "20", "--timeout", "60", "--out", str(tmp_path / name)])
            report = json.loads((tmp_path / f"{name}.json").read_text())
            (run,) = report["runs"]
            assert run["stack"] == "target" and run["target"] == base and run["completed"] == 5, run["failures"]
            assert run["errors"] == 0 and run["latency"]["count"] >= 5 and run["latency"]["p99_ms"] > 0
            state = run["state"]
            assert state["checked"] and state["unfinished_groups"] == 0 and state["lost_state"] == 0, state
            assert state["duplicated"] == 0 and state["ledger"]["db_writes"] == state["ledger"]["logged_writes"] > 0
            assert report["targets"]["target"] == {"bot": 5 if load.ok(run) else 0}
            assert f"| {base} | – | bot | 5 |" in (tmp_path / f"{name}.md").read_text()
    assert run["study"] == "by-hand" and run["study_made_by"].startswith("experimenter")
