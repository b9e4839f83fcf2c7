"""Social welfare over a members x candidates matrix of (predicted) agreement, pure numpy.

Bakker et al. (2022) pick, among N candidate statements, the one that maximises a welfare
function of the members' predicted agreements. Each function here maps a matrix ``u`` of shape
(members, candidates) to one welfare value per candidate:

- utilitarian: the mean agreement;
- Rawlsian: the agreement of the least satisfied member (the minimum);
- isoelastic with inequality aversion α ≥ 0: the mean of (u^(1−α) − 1)/(1−α) (the Box–Cox form, continuous in α:
  log u at α = 1); α = 0 is utilitarian (less a constant 1) and α → ∞ approaches Rawlsian (``alpha=math.inf`` is exactly Rawlsian).

Means rather than sums, so that values compare across group sizes; the winner is the same.
Isoelastic welfare needs positive utilities: the 1–7 agreement scale is, and values below
``floor`` are raised to it.
"""
from __future__ import annotations

import math

import numpy as np

METHODS = ("utilitarian", "rawlsian", "isoelastic")


def _matrix(u) -> np.ndarray:
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 2 or u.shape[0] == 0 or u.shape[1] == 0:
        raise ValueError(f"expected a non-empty members x candidates matrix, got shape {u.shape}")
    if not np.all(np.isfinite(u)):
        raise ValueError("utilities must be finite")
    return u


def utilitarian(u) -> np.ndarray:
    """Mean agreement per candidate."""
    return _matrix(u).mean(axis=0)


def rawlsian(u) -> np.ndarray:
    """The least satisfied member's agreement per candidate."""
    return _matrix(u).min(axis=0)


def isoelastic(u, alpha: float, *, floor: float = 1e-6) -> np.ndarray:
    """Mean of (u^(1−α) − 1)/(1−α) per candidate (log u at α = 1; the minimum at α = ∞).

    The −1 changes no ranking but keeps α near 1 exact: u^(1−α)/(1−α) is then ~1/(1−α) plus a difference
    below float precision, and every candidate would tie (hypothesis found α = 1 + 2e-16)."""
    if alpha < 0 or math.isnan(alpha):
        raise ValueError("alpha must be >= 0")
    if math.isinf(alpha):
        return rawlsian(u)
    u = np.maximum(_matrix(u), floor)
    logs = np.log(u)
    if alpha == 1:
        return logs.mean(axis=0)
    # expm1 in log space: no overflow for tiny u and large α, no cancellation for α near 1.
    return (np.expm1((1 - alpha) * logs) / (1 - alpha)).mean(axis=0)


def welfare(u, method: str = "utilitarian", *, alpha: float = 1.0) -> np.ndarray:
    """Welfare per candidate under ``method`` (one of ``METHODS``); ``alpha`` is for isoelastic."""
    if method == "utilitarian":
        return utilitarian(u)
    if method == "rawlsian":
        return rawlsian(u)
    if method == "isoelastic":
        return isoelastic(u, alpha)
    raise ValueError(f"method must be one of {METHODS}, not {method!r}")


def welfare_winner(u, method: str = "utilitarian", *, alpha: float = 1.0, seed: int | None = None) -> int:
    """Column index of the candidate with the highest welfare.

    Exact ties go to the lowest index, or to a seeded random choice among them when ``seed``
    is given. Rawlsian ties are first broken by the utilitarian mean (leximin would go further).
    """
    w = welfare(u, method, alpha=alpha)
    best = np.flatnonzero(w == w.max())
    if len(best) > 1 and method == "rawlsian":
        mean = utilitarian(u)[best]
        best = best[mean == mean.max()]
    if len(best) == 1 or seed is None:
        return int(best[0])
    return int(np.random.default_rng(seed).choice(best))
