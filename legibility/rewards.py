"""Prover rewards of the prover–verifier game (Kirchner et al. 2024, RESEARCH.md §2), vectorised over a batch.

For a batch of solutions, each with its problem, its role (helpful h=1 / sneaky h=0), its correctness c and
the frozen verifier's score V:

- SRC, signed relative convincingness (the paper's best): V′ is V minus the mean of V over the batch's
  solutions for the same (problem, role); ``R = (2c−1)(2h−1)·V′`` if V′ > 0, else −1. A solution is only
  rewarded for being more convincing than its siblings, and only in its role's direction.
- CGC, correctness-gated convincingness: ``R = V`` if h = c (helpful and correct, or sneaky and wrong),
  else −2.
- Goodharting: ``R = V``, no roles: the baseline that optimises the verifier alone.

Pure numpy; the GRPO reward function in ``prover.py`` calls ``compute_rewards``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

CGC_PENALTY = -2.0
SRC_FLOOR = -1.0


def _arrays(scores, correct, helpful) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.asarray(scores, dtype=np.float64)
    c = np.asarray(correct, dtype=bool)
    h = np.asarray(helpful, dtype=bool)
    if not (v.shape == c.shape == h.shape) or v.ndim != 1:
        raise ValueError(f"scores, correct and helpful must be 1-d and equally long: {v.shape}, {c.shape}, {h.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("verifier scores must be finite")
    return v, c, h


def normalise_scores(scores: Sequence[float], problems: Sequence, helpful: Sequence[bool]) -> np.ndarray:
    """V′: each score minus the mean score of the batch's solutions with the same (problem, role)."""
    v = np.asarray(scores, dtype=np.float64)
    keys = list(zip(problems, np.asarray(helpful, dtype=bool).tolist(), strict=True))
    if len(keys) != len(v):
        raise ValueError("one problem id and one role per score")
    _, group = np.unique(np.array([f"{p!r}\x00{r}" for p, r in keys], dtype=object), return_inverse=True)
    sums = np.bincount(group, weights=v)
    counts = np.bincount(group)
    return v - (sums / counts)[group]


def src_reward(scores: Sequence[float], correct: Sequence[bool], helpful: Sequence[bool],
               problems: Sequence) -> np.ndarray:
    """Signed relative convincingness: (2c−1)(2h−1)·V′ where V′ > 0, else −1."""
    v, c, h = _arrays(scores, correct, helpful)
    v_norm = normalise_scores(v, problems, h)
    signed = (2 * c.astype(np.float64) - 1) * (2 * h.astype(np.float64) - 1) * v_norm
    return np.where(v_norm > 0, signed, SRC_FLOOR)


def cgc_reward(scores: Sequence[float], correct: Sequence[bool], helpful: Sequence[bool],
               problems: Sequence | None = None) -> np.ndarray:
    """Correctness-gated convincingness: V where the solution's correctness matches its role, else −2."""
    v, c, h = _arrays(scores, correct, helpful)
    return np.where(c == h, v, CGC_PENALTY)


def goodhart_reward(scores: Sequence[float], correct: Sequence[bool] | None = None,
                    helpful: Sequence[bool] | None = None, problems: Sequence | None = None) -> np.ndarray:
    """The verifier score alone (roles and correctness ignored)."""
    v = np.asarray(scores, dtype=np.float64)
    if v.ndim != 1 or not np.all(np.isfinite(v)):
        raise ValueError("verifier scores must be a 1-d array of finite numbers")
    return v.copy()


REWARDS: dict[str, Callable[..., np.ndarray]] = {"src": src_reward, "cgc": cgc_reward, "goodhart": goodhart_reward}


def compute_rewards(kind: str, *, scores: Sequence[float], correct: Sequence[bool], helpful: Sequence[bool],
                    problems: Sequence) -> np.ndarray:
    """One reward per solution for ``kind`` in ``REWARDS`` ("src", "cgc", "goodhart")."""
    try:
        function = REWARDS[kind]
    except KeyError:
        raise ValueError(f"unknown reward {kind!r}; known: {', '.join(REWARDS)}") from None
    return function(scores, correct, helpful, problems)
