"""Welfare functions over members x candidates agreement matrices: values by hand and properties."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.social_choice import welfare_winner as reexported
from core.welfare import isoelastic, rawlsian, utilitarian, welfare, welfare_winner

# Two members; candidate 0 pleases one a lot, candidate 1 both moderately.
U = np.array([[7.0, 5.0], [1.0, 4.0]])

matrices = st.tuples(st.integers(1, 6), st.integers(1, 8)).flatmap(
    lambda shape: arrays(np.float64, shape, elements=st.floats(1, 7, allow_nan=False)))


def test_values_by_hand():
    assert utilitarian(U).tolist() == [4.0, 4.5]
    assert rawlsian(U).tolist() == [1.0, 4.0]
    assert isoelastic(U, 1.0) == pytest.approx([(math.log(7) + 0) / 2, (math.log(5) + math.log(4)) / 2])
    assert isoelastic(U, 2.0) == pytest.approx([((1 - 1 / 7) + 0) / 2, ((1 - 1 / 5) + (1 - 1 / 4)) / 2])
    assert welfare_winner(U, "utilitarian") == 1 and welfare_winner(U, "rawlsian") == 1
    # A utilitarian who prefers candidate 0 when its mean is higher; the Rawlsian still refuses it.
    v = np.array([[7.0, 5.0], [3.0, 4.0]])
    assert welfare_winner(v, "utilitarian") == 0 and welfare_winner(v, "rawlsian") == 1
    assert welfare_winner(v, "isoelastic", alpha=0.0) == 0 and welfare_winner(v, "isoelastic", alpha=10.0) == 1
    assert reexported is welfare_winner


def test_invalid_input_is_refused():
    for bad in (np.zeros((0, 3)), np.array([1.0, 2.0]), np.array([[np.nan, 1.0]])):
        with pytest.raises(ValueError):
            utilitarian(bad)
    with pytest.raises(ValueError):
        isoelastic(U, -1)
    with pytest.raises(ValueError):
        welfare(U, "nash")


def test_ties_go_to_the_lowest_index_or_a_seeded_draw():
    tied = np.ones((3, 4))
    assert welfare_winner(tied) == 0
    assert {welfare_winner(tied, seed=s) for s in range(40)} == {0, 1, 2, 3}
    assert welfare_winner(np.array([[1.0, 1.0], [5.0, 6.0]]), "rawlsian") == 1  # min tie broken by the mean


@given(matrices)
def test_orderings_between_the_functions(u):
    assert np.all(utilitarian(u) >= rawlsian(u) - 1e-12)
    assert np.allclose(isoelastic(u, 0.0), utilitarian(u) - 1)
    assert np.array_equal(isoelastic(u, math.inf), rawlsian(u))
    # Isoelastic welfare is an increasing transform of a power mean that falls as α grows toward the minimum.
    for a in (0.5, 2.0, 5.0):
        ede = (1 + isoelastic(u, a) * (1 - a)) ** (1 / (1 - a))  # equally-distributed equivalent
        assert np.all(ede <= utilitarian(u) + 1e-9) and np.all(ede >= rawlsian(u) - 1e-9)


@given(matrices, st.sampled_from(["utilitarian", "rawlsian", "isoelastic"]), st.floats(0, 8))
def test_pareto_dominance_and_monotonicity(u, method, alpha):
    w = welfare(u, method, alpha=alpha)
    better = u.copy()
    better[:, 0] = np.minimum(u[:, 0] + 0.5, 7.5)  # every member likes candidate 0 more
    assert welfare(better, method, alpha=alpha)[0] > w[0]
    assert np.allclose(welfare(better, method, alpha=alpha)[1:], w[1:])
    dominant = np.concatenate([u, u.max(axis=1, keepdims=True) + 0.1], axis=1)
    assert welfare_winner(dominant, method, alpha=alpha) == u.shape[1]


@given(matrices, st.permutations(range(8)))
def test_welfare_does_not_depend_on_member_order(u, perm):
    rows = [p for p in perm if p < u.shape[0]]
    for method in ("utilitarian", "rawlsian", "isoelastic"):
        assert np.allclose(welfare(u[rows], method), welfare(u, method))
