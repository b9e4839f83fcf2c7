"""benchmarks/loop.py's statistics and report (the closed loop itself runs for an hour on this machine: its
result, benchmarks/results/loop.json, is checked for what it must contain)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_module():
    spec = importlib.util.spec_from_file_location("loop_benchmark", ROOT / "benchmarks" / "loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_group_bootstrap_intervals_cover_the_mean_and_shrink_with_more_groups():
    loop = load_module()
    few = loop.bootstrap_mean([4.0, 5.0, 6.0, 5.5], seed=1)
    many = loop.bootstrap_mean([4.0, 5.0, 6.0, 5.5] * 10, seed=1)
    assert few["low"] <= few["mean"] <= few["high"] and few["n"] == 4
    assert (many["high"] - many["low"]) < (few["high"] - few["low"])
    assert loop.bootstrap_mean([])["mean"] is None
    d = loop.bootstrap_difference([6.0, 6.5, 6.2, 6.4] * 5, [4.0, 4.5, 4.2, 4.4] * 5)
    assert d["difference"] == pytest.approx(2.0) and d["low"] > 0 and d["p_le_0"] == 0.0
    same = loop.bootstrap_difference([5.0, 6.0] * 10, [5.0, 6.0] * 10)
    assert same["low"] < 0 < same["high"]


def test_the_report_renders_and_plots(tmp_path):
    loop = load_module()
    arm = {"groups": 3, "winner_agreement": loop.bootstrap_mean([5.0, 6.0, 7.0]),
           "shown_agreement": loop.bootstrap_mean([4.0, 5.0, 5.5]), "winner_words_mean": 40.0}
    report = {"arms": {"phase_a": arm, "control": arm, "learning": arm},
              "learning_minus_control": {"winner_agreement": loop.bootstrap_difference([5, 6, 7], [5, 6, 7])},
              "training": {"reward_model": {"status": "done", "validation_pairwise_accuracy": 0.6,
                                            "n_validation_groups": 4, "seconds": 3.0},
                           "generator": {"status": "done", "detail": "8 statements"}},
              "meta": {"command": "python benchmarks/loop.py", "commit": "abc", "finished_at": "now", "seconds": 1.0,
                       "cpus": 2, "include_simulated": True, "population_seed": 0, "group_size": 3, "candidates": 4,
                       "best_of_n": 8}}
    text = loop.markdown(report)
    assert "| Phase B learning | 3 | 6.00 [" in text and "Learning − control" in text
    loop.plot(report, tmp_path / "loop.png")
    assert (tmp_path / "loop.png").stat().st_size > 1000


def test_bad_options_are_refused_clearly(capsys):
    loop = load_module()
    with pytest.raises(SystemExit, match="--best-of-n must be at least --candidates"):
        loop.main(["--candidates", "4", "--best-of-n", "2"])
    with pytest.raises(SystemExit, match="--groups-a must be at least 1"):
        loop.main(["--groups-a", "0"])


def test_the_committed_result_has_every_arm_and_says_simulated_data_was_opted_in():
    path = ROOT / "benchmarks" / "results" / "loop.json"
    report = json.loads(path.read_text())
    meta = report["meta"]
    assert meta["include_simulated"] is True and meta["command"].startswith("python benchmarks/loop.py")
    assert meta["groups_a"] >= 20 and meta["groups_b"] >= 20
    for arm in ("phase_a", "control", "learning"):
        assert report["arms"][arm]["groups"] >= 20, arm
        assert len(report["groups"][arm]) == report["arms"][arm]["groups"]
    for key in ("difference", "low", "high"):
        assert report["learning_minus_control"]["winner_agreement"][key] is not None
