"""Social choice over members' rankings, pure and Django-free.

Schulze's beatpath method with the tie-breaking used by the Habermas Machine: TBRC
(Schulze 2011, §5): ties among the Schulze winners are broken by the voters' own ballots
taken in random order, and by a random draw if every ballot leaves them tied.

A ranking is a list of candidate ids, best first. Candidates a voter left out are ranked
below every candidate the voter listed, and tied among themselves.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Hashable, Sequence

Candidate = Hashable


def pairwise_preferences(
    rankings: Sequence[Sequence[Candidate]], candidates: Sequence[Candidate]
) -> dict[Candidate, dict[Candidate, int]]:
    """d[a][b] = number of voters who rank a strictly above b."""
    d = {a: {b: 0 for b in candidates if b != a} for a in candidates}
    for ranking in rankings:
        position = {c: i for i, c in enumerate(ranking) if c in d}
        unranked = len(ranking)
        for a in candidates:
            for b in candidates:
                if a != b and position.get(a, unranked) < position.get(b, unranked):
                    d[a][b] += 1
    return d


def strongest_paths(
    d: dict[Candidate, dict[Candidate, int]], candidates: Sequence[Candidate]
) -> dict[Candidate, dict[Candidate, int]]:
    """Floyd–Warshall widest paths over the winning-margin graph (link strength = d[a][b])."""
    p = {a: {b: (d[a][b] if d[a][b] > d[b][a] else 0) for b in candidates if b != a} for a in candidates}
    for i in candidates:
        for j in candidates:
            if i == j:
                continue
            for k in candidates:
                if k in (i, j):
                    continue
                p[j][k] = max(p[j][k], min(p[j][i], p[i][k]))
    return p


def schulze_winners(rankings: Sequence[Sequence[Candidate]], candidates: Sequence[Candidate]) -> list[Candidate]:
    """Every candidate not beaten by a stronger path: the (possibly tied) Schulze winners."""
    if not candidates:
        return []
    d = pairwise_preferences(rankings, candidates)
    p = strongest_paths(d, candidates)
    return [a for a in candidates if all(p[a][b] >= p[b][a] for b in candidates if b != a)]


@dataclass(frozen=True)
class SchulzeResult:
    winner: Candidate
    tied_winners: tuple[Candidate, ...]
    tie_broken_by: str  # "none" | "ballot" | "random"


def schulze(
    rankings: Sequence[Sequence[Candidate]], candidates: Sequence[Candidate], *, seed: int | None = None
) -> SchulzeResult:
    """The Schulze winner with TBRC tie-breaking, reproducible for a given seed."""
    if not candidates:
        raise ValueError("no candidates")
    winners = schulze_winners(rankings, candidates)
    if len(winners) == 1:
        return SchulzeResult(winners[0], tuple(winners), "none")
    rng = random.Random(seed)
    ballots = list(rankings)
    rng.shuffle(ballots)
    tied = list(winners)
    for ballot in ballots:
        position = {c: i for i, c in enumerate(ballot)}
        best = min(position.get(c, len(ballot)) for c in tied)
        tied = [c for c in tied if position.get(c, len(ballot)) == best]
        if len(tied) == 1:
            return SchulzeResult(tied[0], tuple(winners), "ballot")
    return SchulzeResult(rng.choice(sorted(tied, key=repr)), tuple(winners), "random")
