"""benchmarks/cluster.py and benchmarks/load.py --target: the pure parts (no cluster, no server). The end-to-end
run through the real cluster is tests/cluster/test_cluster.py::test_the_cluster_benchmark_at_toy_size."""
from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.e2e.stack import ROOT


def benchmark(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("given", "origin"), [
    ("https://10.213.0.2", "https://10.213.0.2"),
    ("https://10.213.0.2/", "https://10.213.0.2"),
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    (" https://study.example.org:8443/ ", "https://study.example.org:8443"),
])
def test_a_target_is_the_stacks_origin(given, origin):
    assert benchmark("load").parse_target(given) == origin


@pytest.mark.parametrize("bad", ["10.213.0.2", "ftp://10.213.0.2", "https://", "https://host/s/study/",
                                 "https://host:port", "https://host/?x=1", ""])
def test_a_target_that_is_not_an_origin_is_refused_with_its_value(bad):
    with pytest.raises(ValueError, match="--target"):
        benchmark("load").parse_target(bad)


def test_load_target_refuses_a_run_without_a_study(capsys):
    load = benchmark("load")
    with pytest.raises(SystemExit):
        load.main(["--target", "https://10.213.0.2"])
    assert "--manage" in capsys.readouterr().err


def _run(web_hosts: int, n: int, p99: float | None, *, errors: int = 0, lost: int = 0, duplicated: int = 0,
         unfinished: int = 0) -> dict:
    return {"stack": "target", "web_hosts": web_hosts, "n": n, "pace": "human", "procs": None, "errors": errors,
            "latency": {"p50_ms": None if p99 is None else p99 / 2, "p95_ms": p99, "p99_ms": p99},
            "state": {"lost_state": lost, "duplicated": duplicated, "unfinished_groups": unfinished}}


def test_capacity_is_the_largest_n_meeting_every_part_of_the_target():
    cluster = benchmark("cluster")
    runs = [_run(2, 250, 20.0), _run(2, 500, 40.0), _run(2, 1000, 99.0),
            _run(1, 250, 30.0), _run(1, 500, 101.0), _run(1, 1000, 90.0, errors=1)]
    assert cluster.capacity(runs, 2) == 1000
    assert cluster.capacity(runs, 1) == 250  # 500: p99 over 100 ms; 1000: an error
    for spoiled in (_run(2, 2000, 10.0, lost=1), _run(2, 2000, 10.0, duplicated=1), _run(2, 2000, 10.0, unfinished=1),
                    _run(2, 2000, None)):
        assert not cluster.meets_target(spoiled)
        assert cluster.capacity([*runs, spoiled], 2) == 1000
    unchecked = _run(2, 2000, 10.0)
    unchecked["state"] = {"lost_state": None, "duplicated": None, "unfinished_groups": None}  # no --manage
    assert not cluster.meets_target(unchecked)
    assert cluster.capacity([], 1) == 0


def test_failover_is_from_the_kill_to_the_last_affected_bot_back():
    cluster = benchmark("cluster")
    killed_at = 1000.0
    records = [
        {"index": 0, "closed_at": 990.0, "reconnected_at": 991.0},  # an earlier drop: not the kill's
        {"index": 1, "closed_at": 1000.2, "reconnected_at": 1001.0},
        {"index": 2, "closed_at": 1000.3, "reconnected_at": 1003.5},
        {"index": 3, "closed_at": 1000.1, "reconnected_at": 1000.6},  # dropped twice: back for good at 1002.1
        {"index": 3, "closed_at": 1000.9, "reconnected_at": 1002.1},
    ]
    summary = cluster.failover_summary(records, killed_at)
    assert summary["affected_bots"] == 3 and summary["reconnected"] == 3 and summary["not_reconnected"] == []
    assert summary["seconds_to_all_reconnected"] == 3.5
    assert summary["per_bot_closed_to_reconnected_s"] == {"median": 2.0, "max": 3.2}
    assert summary["per_bot_kill_to_reconnected_s"] == {"median": 2.1, "max": 3.5}

    never = cluster.failover_summary([*records, {"index": 4, "closed_at": 1000.4, "reconnected_at": None}], killed_at)
    assert never["not_reconnected"] == [4] and never["seconds_to_all_reconnected"] is None
    assert cluster.failover_summary([], killed_at)["seconds_to_all_reconnected"] is None


def test_the_cluster_table_shows_both_ladders_and_the_failover():
    cluster = benchmark("cluster")
    runs = [{**_run(2, 250, 20.0), "groups": 50, "reconnects": 0, "seconds": 300.0},
            {**_run(1, 250, 120.0), "groups": 50, "reconnects": 0, "seconds": 310.0}]
    failover_run = {**_run(2, 200, 30.0), "groups": 40, "completed": 200, "reconnects": 97}
    summary = cluster.failover_summary([{"index": 1, "closed_at": 5.5, "reconnected_at": 7.0}], 5.0)
    table = cluster.markdown({
        "capacity": {"pace": "human", "ladder": [250], "two_hosts": 250, "one_host": 0, "ratio_two_vs_one": None,
                     "runs": runs},
        "failover": {"killed": "web-1", "summary": summary, "run": failover_run}})
    assert "| 2 | human | 250 | 10.0 | 20.0 | 20.0 | 0 | 50/50 | 0 | 0 | 0 | 300.0 | yes |" in table
    assert "| 1 | human | 250 | 60.0 | 120.0 | 120.0 | 0 | 50/50 | 0 | 0 | 0 | 310.0 | no |" in table
    assert "two web hosts 250, one web host 0 (ratio –)" in table
    assert "| 200 | human | web-1 | 1 | 1 | 2.0 | 1.5 / 1.5 | 200/200 | 0 | 0 | 0 |" in table


@pytest.mark.parametrize("bad", ["", "4", "250,x", "3,500"])
def test_a_ladder_below_one_group_or_not_numbers_is_refused(bad):
    with pytest.raises(ValueError, match="--n"):
        benchmark("cluster").parse_ladder(bad)
