"""Schulze with TBRC tie-breaking, on hand-computed profiles."""
import random

from hypothesis import given
from hypothesis import strategies as st

from core.social_choice import pairwise_preferences, schulze, schulze_winners


def profile(*groups):
    """groups: (count, ranking string like 'ACBED')."""
    return [list(r) for count, r in groups for _ in range(count)]


# Wikipedia's Schulze example: 45 voters, 5 candidates, the winner is E.
WIKIPEDIA = profile((5, "ACBED"), (5, "ADECB"), (8, "BEDAC"), (3, "CABED"), (7, "CAEBD"), (2, "CBADE"),
                    (7, "DCEBA"), (8, "EBADC"))


def test_wikipedia_example_pairwise_and_winner():
    d = pairwise_preferences(WIKIPEDIA, list("ABCDE"))
    assert d["A"]["B"] == 20 and d["B"]["A"] == 25
    assert d["E"]["D"] == 31 and d["C"]["E"] == 24 and d["B"]["D"] == 33 and d["D"]["A"] == 15
    assert schulze_winners(WIKIPEDIA, list("ABCDE")) == ["E"]
    result = schulze(WIKIPEDIA, list("ABCDE"), seed=1)
    assert result.winner == "E" and result.tie_broken_by == "none"


def test_condorcet_winner_wins():
    rankings = profile((2, "BAC"), (1, "ABC"), (1, "CBA"))
    assert schulze(rankings, list("ABC")).winner == "B"


def test_tie_broken_by_a_voters_ballot():
    rankings = [["A", "B"], ["B", "A"]]
    assert sorted(schulze_winners(rankings, ["A", "B"])) == ["A", "B"]
    result = schulze(rankings, ["A", "B"], seed=3)
    assert result.tie_broken_by == "ballot" and result.winner in ("A", "B")
    # Reproducible for a seed, and both outcomes are reachable across seeds.
    assert {schulze(rankings, ["A", "B"], seed=s).winner for s in range(30)} == {"A", "B"}
    assert schulze(rankings, ["A", "B"], seed=7) == schulze(rankings, ["A", "B"], seed=7)


def test_no_ballots_means_a_random_winner():
    result = schulze([], ["A", "B", "C"], seed=0)
    assert result.tie_broken_by == "random" and result.winner in "ABC"


def test_unranked_candidates_count_as_last():
    rankings = [["A"], ["A"], ["B", "C", "A"]]
    assert schulze(rankings, list("ABC")).winner == "A"


@given(st.lists(st.permutations(["a", "b", "c", "d"]), min_size=1, max_size=9), st.integers(0, 10**6))
def test_winner_is_always_among_schulze_winners_and_unanimity_holds(rankings, seed):
    result = schulze(rankings, ["a", "b", "c", "d"], seed=seed)
    assert result.winner in schulze_winners(rankings, ["a", "b", "c", "d"])
    unanimous = [list(rankings[0]) for _ in rankings]
    assert schulze(unanimous, ["a", "b", "c", "d"], seed=seed).winner == rankings[0][0]


def test_random_profiles_winner_beats_or_ties_everyone_by_paths():
    rng = random.Random(0)
    for _ in range(100):
        cands = list(range(rng.randint(2, 6)))
        rankings = [rng.sample(cands, len(cands)) for _ in range(rng.randint(1, 7))]
        assert schulze(rankings, cands, seed=1).winner in schulze_winners(rankings, cands)


# --- tie-breaking policies, Borda, Copeland, and a cross-check against pref_voting -------------------

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from core.social_choice import (  # noqa: E402
    borda_scores,
    borda_winners,
    break_tie,
    copeland_scores,
    copeland_winners,
    elect,
    pairwise_matrix,
    strongest_paths,
)


def test_tie_break_policies():
    rankings = [["A", "B"], ["B", "A"]]
    allowed = schulze(rankings, ["A", "B"], tie_break="none")
    assert allowed.tie_broken_by == "unbroken" and allowed.tied_winners == ("A", "B") and allowed.winner == "A"
    randomly = {schulze(rankings, ["A", "B"], seed=s, tie_break="random") for s in range(30)}
    assert {r.tie_broken_by for r in randomly} == {"random"} and {r.winner for r in randomly} == {"A", "B"}
    assert schulze(rankings, ["A", "B"], seed=4) == schulze(rankings, ["A", "B"], seed=4, tie_break="tbrc")
    with pytest.raises(ValueError):
        schulze(rankings, ["A", "B"], tie_break="coin")
    with pytest.raises(ValueError):
        break_tie([], rankings)


def test_tbrc_uses_a_ballot_that_separates_the_tied_winners():
    # Schulze ties A and B; every ballot separates them, so TBRC never needs the random draw.
    rankings = [["A", "B", "C"], ["B", "A", "C"], ["C", "A", "B"], ["C", "B", "A"]]
    result = elect("borda", rankings, list("ABC"), seed=1)
    assert borda_scores(rankings, list("ABC")) == {"A": 4.0, "B": 4.0, "C": 4.0}
    assert result.tie_broken_by == "ballot" and set(result.tied_winners) == {"A", "B", "C"}


def test_borda_and_copeland_by_hand():
    rankings = profile((3, "ABC"), (2, "BCA"))
    assert borda_scores(rankings, list("ABC")) == {"A": 6.0, "B": 7.0, "C": 2.0}
    assert borda_winners(rankings, list("ABC")) == ["B"]
    # A beats both head to head (the Condorcet winner) although B has the most Borda points.
    assert copeland_scores(rankings, list("ABC")) == {"A": 2, "B": 0, "C": -2}
    assert copeland_winners(rankings, list("ABC")) == ["A"]
    # Left-out candidates share the points of the places they occupy together.
    assert borda_scores([["A"]], list("ABC")) == {"A": 2.0, "B": 0.5, "C": 0.5}
    cycle = profile((1, "ABC"), (1, "BCA"), (1, "CAB"))
    assert elect("copeland", cycle, list("ABC"), tie_break="none").tied_winners == ("A", "B", "C")
    with pytest.raises(ValueError):
        elect("plurality", rankings, list("ABC"))


def test_strongest_paths_keeps_its_dict_interface():
    d = pairwise_preferences(WIKIPEDIA, list("ABCDE"))
    p = strongest_paths(d, list("ABCDE"))
    assert p["E"]["A"] == 25 and p["A"]["E"] == 24  # Wikipedia's table of strongest paths
    assert (pairwise_matrix(WIKIPEDIA, list("ABCDE"))[0, 1], d["A"]["B"]) == (20, 20)


def _pref_voting_profile(rankings, n):
    from pref_voting.profiles import Profile

    return Profile([list(r) for r in rankings], rcounts=[1] * len(rankings), cmap={i: i for i in range(n)})


def test_cross_check_with_pref_voting_on_random_profiles():
    from pref_voting.c1_methods import copeland
    from pref_voting.margin_based_methods import beat_path
    from pref_voting.scoring_methods import borda

    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(150):
        n = int(rng.integers(2, 7))
        rankings = [rng.permutation(n).tolist() for _ in range(int(rng.integers(1, 12)))]
        prof = _pref_voting_profile(rankings, n)
        cands = list(range(n))
        assert sorted(schulze_winners(rankings, cands)) == beat_path(prof)
        assert sorted(schulze_winners(rankings, cands)) == beat_path(prof, algorithm="schwartz_sequential_dropping")
        assert sorted(borda_winners(rankings, cands)) == borda(prof)
        assert sorted(copeland_winners(rankings, cands)) == copeland(prof)
        assert list(borda_scores(rankings, cands).values()) == [prof.borda_scores()[c] for c in cands]
        checked += 1
    assert checked == 150


@given(st.lists(st.permutations(list(range(5))), min_size=1, max_size=15))
def test_condorcet_winner_wins_under_schulze_and_copeland(rankings):
    d = pairwise_matrix(rankings, list(range(5)))
    condorcet = [a for a in range(5) if all(d[a, b] > d[b, a] for b in range(5) if b != a)]
    if condorcet:
        assert schulze_winners(rankings, list(range(5))) == condorcet
        assert copeland_winners(rankings, list(range(5))) == condorcet


@given(st.lists(st.permutations(list("abcd")), min_size=1, max_size=10), st.integers(0, 10**6),
       st.sampled_from(["schulze", "borda", "copeland"]), st.sampled_from(["tbrc", "random", "none"]))
def test_every_rule_picks_one_of_its_winners_reproducibly(rankings, seed, method, tie_break):
    result = elect(method, rankings, list("abcd"), seed=seed, tie_break=tie_break)
    assert result.winner in result.tied_winners
    assert result == elect(method, rankings, list("abcd"), seed=seed, tie_break=tie_break)
    # Monotonicity: raising the winner to the top of a ballot never makes it lose.
    raised = [[result.winner] + [c for c in rankings[0] if c != result.winner], *rankings[1:]]
    assert result.winner in elect(method, raised, list("abcd"), tie_break="none").tied_winners
