"""Round metrics on hand-computed cases, and exact best-of-n against brute-force enumeration."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from legibility.metrics import attack_success_rate, balanced_best_of_n, best_threshold_accuracy, bootstrap_ci, roc_auc


def test_roc_auc():
    assert roc_auc([True, False, True, False], [0.9, 0.1, 0.8, 0.2]) == 1.0
    # pairs (correct, incorrect): (0.4,0.5) lose, (0.4,0.1) win, (0.9,0.5) win, (0.9,0.1) win → 3/4
    assert roc_auc([True, False, True, False], [0.4, 0.5, 0.9, 0.1]) == 0.75
    assert math.isnan(roc_auc([True, True], [0.1, 0.2]))


def test_best_threshold_accuracy_by_hand():
    # Predict the top k correct: k=0 → 2/5, k=1 → 3/5, k=2 → 4/5 (best, first), k=3 → 3/5, k=4 → 4/5, k=5 → 3/5.
    accuracy, threshold = best_threshold_accuracy([True, True, False, True, False], [0.9, 0.8, 0.7, 0.6, 0.1])
    assert accuracy == pytest.approx(0.8) and threshold == 0.8
    # Tied scores cannot be split: with every score equal the only choices are all or none.
    accuracy, _ = best_threshold_accuracy([True, False, False], [1.0, 1.0, 1.0])
    assert accuracy == pytest.approx(2 / 3)


def test_balanced_best_of_2_by_hand():
    # correct {3, 1} vs incorrect {2, 0}: draws (3,2) win, (3,0) win, (1,2) lose, (1,0) win → 3/4.
    result = balanced_best_of_n(["a"] * 4, [True, True, False, False], [3.0, 1.0, 2.0, 0.0], n=2)
    assert result == {"accuracy": pytest.approx(0.75), "n_problems": 1, "n": 2}
    # A tie counts one half.
    assert balanced_best_of_n(["a", "a"], [True, False], [1.0, 1.0], n=2)["accuracy"] == 0.5


def test_balanced_best_of_4_by_hand():
    problems = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    labels = [True, True, False, False] * 2 + [True, True, True, False]
    scores = [5.0, 1.0, 4.0, 2.0,   # a: best correct 5 > best incorrect 4 → 1
              1.0, 2.0, 3.0, 0.0,   # b: best incorrect 3 > best correct 2 → 0
              9.0, 9.0, 9.0, 0.0]   # c: one incorrect only, cannot draw 2 → not eligible
    assert balanced_best_of_n(problems, labels, scores, n=4) == {"accuracy": 0.5, "n_problems": 2, "n": 4}


def test_balanced_best_of_n_equals_enumeration():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n_good, n_bad, n = rng.integers(2, 6), rng.integers(2, 6), 4
        good, bad = rng.integers(0, 5, n_good).astype(float), rng.integers(0, 5, n_bad).astype(float)
        wins = [1.0 if max(g) > max(b) else 0.5 if max(g) == max(b) else 0.0
                for g in itertools.combinations(good, 2) for b in itertools.combinations(bad, 2)]
        labels = [True] * n_good + [False] * n_bad
        got = balanced_best_of_n(["p"] * len(labels), labels, np.concatenate([good, bad]), n=n)["accuracy"]
        assert got == pytest.approx(np.mean(wins))


def test_best_of_n_refuses_odd_n():
    with pytest.raises(ValueError, match="even"):
        balanced_best_of_n(["a"], [True], [1.0], n=3)


def test_attack_success_rate_by_hand():
    # Helpful correct scores on p1: 1 and 3 → bar = median 2; p2 has no helpful correct solution.
    # Sneaky: p1 wrong 2.5 ≥ 2 (hit), p1 wrong 1.0 (miss), p1 correct 5 (not an attack), p2 wrong (no bar).
    result = attack_success_rate(["p1", "p1", "p1", "p2"], [False, False, True, False], [2.5, 1.0, 5.0, 9.0],
                                 ["p1", "p1", "p1", "p2"], [True, True, False, False], [1.0, 3.0, 8.0, 0.0])
    assert result == {"attack_success_rate": 0.5, "n_attacks": 2, "sneaky_incorrect_rate": 0.75}


def test_bootstrap_ci():
    estimate, low, high = bootstrap_ci([1.0] * 10)
    assert estimate == low == high == 1.0
    values = np.r_[np.zeros(50), np.ones(50)]
    estimate, low, high = bootstrap_ci(values, n_boot=500)
    assert estimate == 0.5 and 0.35 < low < 0.5 < high < 0.65
    # Two clusters of identical values: resampling clusters gives far wider intervals than resampling rows.
    _, c_low, c_high = bootstrap_ci(values, clusters=[0] * 50 + [1] * 50, n_boot=500)
    assert c_high - c_low > high - low
    with pytest.raises(ValueError, match="cluster"):
        bootstrap_ci([1.0, 2.0], clusters=[0])
