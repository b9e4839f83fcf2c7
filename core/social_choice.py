"""Social choice over members' rankings, pure and Django-free.

Three rules: Schulze's beatpath method (the Habermas Machine's), Borda and Copeland. Ties among
a rule's winners are broken by one of three policies:

- ``"tbrc"`` (the default, as in the Habermas Machine; Schulze 2011, §5): the voters' own ballots
  taken in random order, then a random draw if every ballot leaves them tied;
- ``"random"``: a seeded random draw among the tied winners;
- ``"none"``: ties allowed: the first tied winner in candidate order is reported as ``winner``
  and every tied winner is in ``tied_winners`` with ``tie_broken_by="unbroken"``.

A ranking is a list of candidate ids, best first. Candidates a voter left out are ranked
below every candidate the voter listed, and tied among themselves.

Welfare functions over a members x candidates matrix of predicted agreement live in
``core.welfare`` and are re-exported here.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from .welfare import isoelastic, rawlsian, utilitarian, welfare, welfare_winner  # noqa: F401 (re-exported)

Candidate = Hashable
TIE_BREAKS = ("tbrc", "random", "none")


def position_matrix(rankings: Sequence[Sequence[Candidate]], candidates: Sequence[Candidate]) -> np.ndarray:
    """pos[v, i] = where voter v put candidates[i] (0 = best); left-out candidates share len(ranking)."""
    index = {c: i for i, c in enumerate(candidates)}
    pos = np.empty((len(rankings), len(candidates)), dtype=np.int32)
    for v, ranking in enumerate(rankings):
        pos[v].fill(len(ranking))
        for place, c in enumerate(ranking):
            i = index.get(c)
            if i is not None:
                pos[v, i] = place
    return pos


def pairwise_matrix(rankings: Sequence[Sequence[Candidate]], candidates: Sequence[Candidate]) -> np.ndarray:
    """D[i, j] = number of voters who rank candidates[i] strictly above candidates[j]."""
    pos = position_matrix(rankings, candidates)
    n = len(candidates)
    d = np.zeros((n, n), dtype=np.int64)
    for i in range(n):  # one row at a time keeps memory at voters x candidates
        d[i] = (pos[:, i : i + 1] < pos).sum(axis=0)
    return d


def pairwise_preferences(
    rankings: Sequence[Sequence[Candidate]], candidates: Sequence[Candidate]
) -> dict[Candidate, dict[Candidate, int]]:
    """d[a][b] = number of voters who rank a strictly above b."""
    d = pairwise_matrix(rankings, candidates)
    return {a: {b: int(d[i, j]) for j, b in enumerate(candidates) if b != a} for i, a in enumerate(candidates)}


def strongest_paths(
    d: dict[Candidate, dict[Candidate, int]], candidates: Sequence[Candidate]
) -> dict[Candidate, dict[Candidate, int]]:
    """Floyd–Warshall widest paths over the winning-votes graph (link strength = d[a][b] where a beats b).

    With complete strict ballots this picks the same winners as the margin variant (pref_voting's
    ``beat_path``): the margin 2·d[a][b] − n is a strictly increasing function of d[a][b].
    """
    n = len(candidates)
    dm = np.array([[d[a][b] if a != b else 0 for b in candidates] for a in candidates], dtype=np.int64).reshape(n, n)
    p = _widest_paths(dm)
    return {a: {b: int(p[i, j]) for j, b in enumerate(candidates) if b != a} for i, a in enumerate(candidates)}


def _widest_paths(d: np.ndarray) -> np.ndarray:
    p = np.where(d > d.T, d, 0)
    np.fill_diagonal(p, 0)
    for k in range(len(p)):  # vectorised over (j, l); the diagonal stays 0 because p[j, j] starts at 0
        p = np.maximum(p, np.minimum(p[:, k : k + 1], p[k : k + 1, :]))
        np.fill_diagonal(p, 0)
    return p


def schulze_winners(rankings: Sequence[Sequence[Candidate]], candidates: Sequence[Candidate]) -> list[Candidate]:
    """Every candidate not beaten by a stronger path: the (possibly tied) Schulze winners."""
    if not candidates:
        return []
    p = _widest_paths(pairwise_matrix(rankings, candidates))
    return [a for i, a in enumerate(candidates) if bool(np.all(p[i] >= p[:, i]))]


def borda_scores(rankings: Sequence[Sequence[Candidate]], candidates: Sequence[Candidate]) -> dict[Candidate, float]:
    """Per ballot, one point for each candidate ranked strictly below and half a point for each tie.

    On complete ballots this is the classic m−1, m−2, …, 0; left-out candidates share the
    points of the places they jointly occupy.
    """
    d = pairwise_matrix(rankings, candidates)
    ties = len(rankings) - d - d.T
    np.fill_diagonal(ties, 0)
    scores = d.sum(axis=1) + ties.sum(axis=1) / 2
    return {c: float(s) for c, s in zip(candidates, scores, strict=True)}


def copeland_scores(rankings: Sequence[Sequence[Candidate]], candidates: Sequence[Candidate]) -> dict[Candidate, int]:
    """Head-to-head majority wins minus losses (as pref_voting's ``copeland``)."""
    d = pairwise_matrix(rankings, candidates)
    scores = np.sign(d - d.T).sum(axis=1)
    return {c: int(s) for c, s in zip(candidates, scores, strict=True)}


def _best(scores: dict[Candidate, float]) -> list[Candidate]:
    top = max(scores.values())
    return [c for c, s in scores.items() if s == top]


def borda_winners(rankings: Sequence[Sequence[Candidate]], candidates: Sequence[Candidate]) -> list[Candidate]:
    return _best(borda_scores(rankings, candidates)) if candidates else []


def copeland_winners(rankings: Sequence[Sequence[Candidate]], candidates: Sequence[Candidate]) -> list[Candidate]:
    return _best(copeland_scores(rankings, candidates)) if candidates else []


WINNER_RULES: dict[str, Callable[[Sequence[Sequence[Candidate]], Sequence[Candidate]], list[Candidate]]] = {
    "schulze": schulze_winners,
    "borda": borda_winners,
    "copeland": copeland_winners,
}


@dataclass(frozen=True)
class SchulzeResult:
    """The outcome of any rule here (the name is historical: Schulze came first)."""

    winner: Candidate
    tied_winners: tuple[Candidate, ...]
    tie_broken_by: str  # "none" | "ballot" | "random" | "unbroken" (ties allowed and left)


ElectionResult = SchulzeResult


def break_tie(
    winners: Sequence[Candidate], rankings: Sequence[Sequence[Candidate]], *, tie_break: str = "tbrc",
    seed: int | None = None,
) -> SchulzeResult:
    """Pick one of ``winners`` by the tie-breaking policy; reproducible for a given seed."""
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {TIE_BREAKS}, not {tie_break!r}")
    if not winners:
        raise ValueError("no winners to choose from")
    if len(winners) == 1:
        return SchulzeResult(winners[0], tuple(winners), "none")
    if tie_break == "none":
        return SchulzeResult(winners[0], tuple(winners), "unbroken")
    rng = random.Random(seed)
    tied = list(winners)
    if tie_break == "tbrc":
        ballots = list(rankings)
        rng.shuffle(ballots)
        for ballot in ballots:
            position = {c: i for i, c in enumerate(ballot)}
            best = min(position.get(c, len(ballot)) for c in tied)
            tied = [c for c in tied if position.get(c, len(ballot)) == best]
            if len(tied) == 1:
                return SchulzeResult(tied[0], tuple(winners), "ballot")
    return SchulzeResult(rng.choice(sorted(tied, key=repr)), tuple(winners), "random")


def elect(
    method: str, rankings: Sequence[Sequence[Candidate]], candidates: Sequence[Candidate], *,
    seed: int | None = None, tie_break: str = "tbrc",
) -> SchulzeResult:
    """The winner under ``method`` ("schulze", "borda" or "copeland") with the given tie-breaking."""
    if method not in WINNER_RULES:
        raise ValueError(f"method must be one of {sorted(WINNER_RULES)}, not {method!r}")
    if not candidates:
        raise ValueError("no candidates")
    return break_tie(WINNER_RULES[method](rankings, candidates), rankings, tie_break=tie_break, seed=seed)


def schulze(
    rankings: Sequence[Sequence[Candidate]], candidates: Sequence[Candidate], *, seed: int | None = None,
    tie_break: str = "tbrc",
) -> SchulzeResult:
    """The Schulze winner with TBRC tie-breaking (by default), reproducible for a given seed."""
    return elect("schulze", rankings, candidates, seed=seed, tie_break=tie_break)
