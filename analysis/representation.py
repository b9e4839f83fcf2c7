"""Minority representation in winning statements (Tessler et al. 2024, Habermas Machine Fig. 4C).

Every text is embedded (all-MiniLM-L6-v2, mean pooling; ``analysis.reward.model.embed_texts``). The axis
between the question's negating and affirming statements places each opinion; in a group, the opinions
split into two sides at the largest gap along the axis (see ``minority_members`` for why not at the
midpoint), and the side with fewer members is the minority. The winning statement's embedding is fitted as a convex
combination of the members' opinion embeddings (weights >= 0, summing to 1); the weight on the minority's
opinions, compared with the minority's share of the group, says whether the statement gave them a fair
say (paper: revised winner 0.36 vs share 0.285; treat it as a metric to report, not a number to hit).

The math (``axis_position``, ``minority_members``, ``convex_weights``, ``group_representation``) works on
plain vectors; ``representation_frame`` adds the embedding step, which is injectable for tests.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from core.metrics import cluster_bootstrap

RESULT_COLUMNS = ["group_id", "round", "condition", "members", "minority_members", "minority_share",
                  "minority_weight", "winner_position", "fit_error"]


def axis_position(vectors: np.ndarray, affirming: np.ndarray, negating: np.ndarray) -> np.ndarray:
    """Position of each vector on the line through the two statements: +1 at affirming, -1 at negating."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    axis = np.asarray(affirming, dtype=np.float64) - np.asarray(negating, dtype=np.float64)
    length = float(axis @ axis)
    if length == 0:
        raise ValueError("the affirming and negating statements have the same embedding")
    midpoint = (np.asarray(affirming, dtype=np.float64) + np.asarray(negating, dtype=np.float64)) / 2
    return 2 * (vectors - midpoint) @ axis / length


def minority_members(positions: Sequence[float], *, rule: str = "gap", min_gap: float = 0.25) -> np.ndarray:
    """Boolean mask of the group's minority from the members' opinion positions on the axis.

    ``rule="gap"`` (default): split the sorted positions at their largest gap; the smaller side is the
    minority, provided the gap is at least ``min_gap`` (axis units: the two statements are 2 apart).
    ``rule="sign"``: sides by the sign of the position (the midpoint between the statements).
    The gap rule is the default because all-MiniLM-L6-v2 reads "NOT" weakly: a negating opinion wrapped in
    a sentence ("After some thought I believe we should NOT ...") drifts towards the affirming statement, so
    the midpoint misplaces whole groups, while the order of the opinions along the axis mostly stays right.
    On two simulated studies (tests/analysis/simulated.py; 12 groups of 4, one planted minority member each)
    the gap rule found the planted minority exactly in 7 groups, the sign rule in 2: with this small
    embedder, the minority found from texts is a noisy proxy for the members' stated positions.
    All False when there is no minority to speak of: equal sides, everyone on one side, or a small gap."""
    positions = np.asarray(positions, dtype=np.float64)
    none = np.zeros(len(positions), dtype=bool)
    if rule == "sign":
        affirm, negate = positions > 0, positions < 0
        if affirm.sum() == negate.sum() or not affirm.any() or not negate.any():
            return none
        return affirm if affirm.sum() < negate.sum() else negate
    if rule != "gap":
        raise ValueError(f"unknown rule {rule!r}: 'gap' or 'sign'")
    if len(positions) < 2:
        return none
    order = np.argsort(positions, kind="stable")
    gaps = np.diff(positions[order])
    split = int(np.argmax(gaps))
    if gaps[split] < min_gap or 2 * (split + 1) == len(positions):
        return none
    low = np.zeros(len(positions), dtype=bool)
    low[order[: split + 1]] = True
    return low if 2 * low.sum() < len(positions) else ~low


def convex_weights(target: np.ndarray, sources: np.ndarray, *, penalty: float = 1e3) -> tuple[np.ndarray, float]:
    """Weights w >= 0 with sum 1 minimising ||sources.T @ w - target|| (and that residual norm).

    Non-negative least squares with the sum-to-one constraint as a heavily weighted extra equation
    (exact as ``penalty`` grows; 1e3 puts the constraint's error far below the embeddings' scale), then
    renormalised so the weights sum to exactly 1."""
    sources = np.atleast_2d(np.asarray(sources, dtype=np.float64))
    target = np.asarray(target, dtype=np.float64)
    if sources.shape[0] == 0:
        raise ValueError("no source vectors")
    if sources.shape[1] != target.shape[0]:
        raise ValueError(f"sources have dimension {sources.shape[1]}, the target {target.shape[0]}")
    if sources.shape[0] == 1:
        return np.ones(1), float(np.linalg.norm(sources[0] - target))
    a = np.vstack([sources.T, penalty * np.ones((1, sources.shape[0]))])
    b = np.concatenate([target, [penalty]])
    weights, _ = nnls(a, b, maxiter=50 * a.shape[1])
    total = weights.sum()
    weights = weights / total if total > 0 else np.full(len(weights), 1 / len(weights))
    return weights, float(np.linalg.norm(sources.T @ weights - target))


@dataclass(frozen=True)
class GroupResult:
    minority: np.ndarray  # bool per member
    weights: np.ndarray  # convex weights per member
    winner_position: float
    fit_error: float

    @property
    def minority_share(self) -> float:
        return float(self.minority.mean()) if len(self.minority) else float("nan")

    @property
    def minority_weight(self) -> float:
        return float(self.weights[self.minority].sum())


def group_representation(opinions: np.ndarray, winner: np.ndarray, affirming: np.ndarray,
                         negating: np.ndarray, *, rule: str = "gap") -> GroupResult:
    """One group and one winning statement: who is the minority, and how much of the winner is theirs."""
    opinions = np.atleast_2d(np.asarray(opinions, dtype=np.float64))
    minority = minority_members(axis_position(opinions, affirming, negating), rule=rule)
    weights, error = convex_weights(np.asarray(winner, dtype=np.float64), opinions)
    return GroupResult(minority=minority, weights=weights,
                       winner_position=float(axis_position(winner, affirming, negating)[0]), fit_error=error)


# --- texts in, one row per group and winner out ---------------------------------------------------------
@dataclass
class GroupTexts:
    """The texts of one group that the analysis needs."""

    group_id: int
    affirming: str
    negating: str
    opinions: dict[int, str]  # participant id -> opinion
    winners: dict[int, str] = field(default_factory=dict)  # round -> winning statement
    condition: str = "standard"


def embed(texts: Sequence[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings (loaded offline from the installed package)."""
    from .reward.model import embed_texts

    return embed_texts(list(texts))


def representation_frame(groups: Sequence[GroupTexts],
                         embed_fn: Callable[[Sequence[str]], np.ndarray] | None = None, *,
                         rule: str = "gap") -> pd.DataFrame:
    """One row per (group, round with a winner) with the minority's share and weight (``RESULT_COLUMNS``).

    Groups without a question's two statements, without a winner, or with fewer than two opinions are left
    out; every distinct text is embedded once (``embed_fn``, default ``embed``: all-MiniLM-L6-v2)."""
    usable = [g for g in groups if g.affirming and g.negating and g.winners and len(g.opinions) >= 2]
    if not usable:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in RESULT_COLUMNS})
    texts = list(dict.fromkeys(t for g in usable for t in (g.affirming, g.negating, *g.opinions.values(),
                                                           *g.winners.values())))
    vectors = np.asarray((embed_fn or embed)(texts), dtype=np.float64)
    index = {t: i for i, t in enumerate(texts)}
    rows = []
    for g in usable:
        opinions = vectors[[index[t] for t in g.opinions.values()]]
        for round_, winner in sorted(g.winners.items()):
            result = group_representation(opinions, vectors[index[winner]], vectors[index[g.affirming]],
                                          vectors[index[g.negating]], rule=rule)
            rows.append({"group_id": g.group_id, "round": round_, "condition": g.condition,
                         "members": len(g.opinions), "minority_members": int(result.minority.sum()),
                         "minority_share": result.minority_share, "minority_weight": result.minority_weight,
                         "winner_position": result.winner_position, "fit_error": result.fit_error})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def pooled_representation(frame: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0,
                          level: float = 0.95) -> pd.DataFrame:
    """Per round, over groups that have a minority: mean minority weight, mean minority share and their
    difference, with group-bootstrap intervals (each group counts once)."""
    out = []
    with_minority = frame[frame["minority_members"] > 0]
    for round_, part in with_minority.groupby("round", sort=True):
        num = part[["minority_weight", "minority_share"]].to_numpy(dtype=float)
        boot = cluster_bootstrap(num, np.ones_like(num), n_boot=n_boot, seed=seed, level=level)
        low, high = boot.interval()
        for k, measure in enumerate(("minority weight", "minority share")):
            out.append({"round": int(round_), "measure": measure, "estimate": float(boot.estimate[k]),
                        "low": float(low[k]), "high": float(high[k]), "groups": len(part)})
        estimate, lo, hi = boot.contrast(0, 1)
        out.append({"round": int(round_), "measure": "weight − share", "estimate": estimate, "low": lo, "high": hi,
                    "groups": len(part)})
    return pd.DataFrame(out, columns=["round", "measure", "estimate", "low", "high", "groups"])
