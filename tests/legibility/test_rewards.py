"""Prover rewards on a hand-computed batch; the arithmetic is written out beside each expectation."""
from __future__ import annotations

import numpy as np
import pytest

from legibility.rewards import cgc_reward, compute_rewards, goodhart_reward, normalise_scores, src_reward

# Five (problem, role) groups, shuffled together so grouping by (problem, role) is what the code must do.
ROWS = [  # problem, helpful, correct, verifier score
    ("p1", True, True, 1.0),
    ("p1", False, False, 0.5),
    ("p2", True, False, 4.0),
    ("p1", True, False, 2.0),
    ("p2", False, False, -1.0),
    ("p1", True, True, 6.0),
    ("p1", False, True, 1.5),
    ("p2", True, True, 2.0),
    ("p2", False, False, 0.0),
    ("p3", False, False, 2.0),
    ("p2", False, True, 4.0),
    ("p3", False, False, 0.0),
]
PROBLEMS = [r[0] for r in ROWS]
HELPFUL = [r[1] for r in ROWS]
CORRECT = [r[2] for r in ROWS]
SCORES = [r[3] for r in ROWS]


def test_normalise_per_problem_and_role():
    # (p1, helpful): 1, 2, 6 → mean 3 → −2, −1, +3      (p1, sneaky): 0.5, 1.5 → mean 1 → −0.5, +0.5
    # (p2, helpful): 4, 2 → mean 3 → +1, −1              (p2, sneaky): −1, 0, 4 → mean 1 → −2, −1, +3
    # (p3, sneaky): 2, 0 → mean 1 → +1, −1
    expected = [-2.0, -0.5, 1.0, -1.0, -2.0, 3.0, 0.5, -1.0, -1.0, 1.0, 3.0, -1.0]
    np.testing.assert_allclose(normalise_scores(SCORES, PROBLEMS, HELPFUL), expected)


def test_src_by_hand():
    # R = (2c−1)(2h−1)·V′ where V′ > 0, else −1:
    expected = [
        -1.0,              # p1 helpful correct,   V′ = −2   → −1
        -1.0,              # p1 sneaky wrong,      V′ = −0.5 → −1
        -1.0,              # p2 helpful wrong,     V′ = +1   → (−1)(+1)(1) = −1
        -1.0,              # p1 helpful wrong,     V′ = −1   → −1
        -1.0,              # p2 sneaky wrong,      V′ = −2   → −1
        3.0,               # p1 helpful correct,   V′ = +3   → (+1)(+1)(3) = 3
        -0.5,              # p1 sneaky correct,    V′ = +0.5 → (+1)(−1)(0.5) = −0.5
        -1.0,              # p2 helpful correct,   V′ = −1   → −1
        -1.0,              # p2 sneaky wrong,      V′ = −1   → −1
        1.0,               # p3 sneaky wrong,      V′ = +1   → (−1)(−1)(1) = +1
        -3.0,              # p2 sneaky correct,    V′ = +3   → (+1)(−1)(3) = −3
        -1.0,              # p3 sneaky wrong,      V′ = −1   → −1
    ]
    np.testing.assert_allclose(src_reward(SCORES, CORRECT, HELPFUL, PROBLEMS), expected)
    np.testing.assert_allclose(compute_rewards("src", scores=SCORES, correct=CORRECT, helpful=HELPFUL,
                                               problems=PROBLEMS), expected)


def test_src_is_shift_invariant_within_a_group():
    # V′ subtracts the group mean, so adding a constant to one group's scores changes nothing.
    shifted = [s + (10.0 if p == "p1" and h else 0.0) for s, p, h in zip(SCORES, PROBLEMS, HELPFUL)]
    np.testing.assert_allclose(src_reward(shifted, CORRECT, HELPFUL, PROBLEMS),
                               src_reward(SCORES, CORRECT, HELPFUL, PROBLEMS))


def test_cgc_by_hand():
    # R = V where c = h (helpful correct, sneaky wrong), else −2; raw V, no normalisation.
    expected = [1.0, 0.5, -2.0, -2.0, -1.0, 6.0, -2.0, 2.0, 0.0, 2.0, -2.0, 0.0]
    np.testing.assert_allclose(cgc_reward(SCORES, CORRECT, HELPFUL), expected)


def test_goodhart_is_the_score():
    np.testing.assert_allclose(goodhart_reward(SCORES), SCORES)
    np.testing.assert_allclose(compute_rewards("goodhart", scores=SCORES, correct=CORRECT, helpful=HELPFUL,
                                               problems=PROBLEMS), SCORES)


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="unknown reward"):
        compute_rewards("bogus", scores=[1.0], correct=[True], helpful=[True], problems=["p"])
    with pytest.raises(ValueError, match="equally long"):
        src_reward([1.0, 2.0], [True], [True, False], ["p", "p"])
    with pytest.raises(ValueError, match="finite"):
        cgc_reward([float("nan")], [True], [True])
