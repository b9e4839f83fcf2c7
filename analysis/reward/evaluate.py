"""Metrics on held-out ratings and the simple baselines they are compared with. Pure numpy/scipy.

Metrics, for predicted agreement ``pred`` (1–7) of each record:
- pairwise accuracy: over every pair one member ordered (rank, else agreement), the share the
  prediction orders the same way (a predicted tie counts one half);
- Spearman: per member, the rank correlation between prediction and the member's ranking
  (their agreement where they did not rank), averaged over members with at least two
  distinct values;
- MAE: mean |pred − agreement| on the 7-point scale.

Baselines: random; candidate length (longer reads as more complete); cosine between the
opinion's and the candidate's all-MiniLM-L6-v2 embeddings. A baseline's raw score is mapped
to the 1–7 scale by a least-squares line fitted on the training records, so its MAE is fair.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import spearmanr

from .data import RatingRecord, preference_pairs


def ranking_metrics(records: Sequence[RatingRecord], pred: np.ndarray) -> dict:
    pred = np.asarray(pred, dtype=np.float64)
    pairs = preference_pairs(records)
    if pairs:
        w, lo = np.array(pairs).T
        pairwise = float(np.mean((pred[w] > pred[lo]) + 0.5 * (pred[w] == pred[lo])))
    else:
        pairwise = math.nan
    by_member: dict[tuple, list[int]] = {}
    for i, r in enumerate(records):
        by_member.setdefault(r.member_key, []).append(i)
    rhos = []
    for idx in by_member.values():
        truth = [(-records[i].rank if records[i].rank is not None else records[i].agreement) for i in idx]
        if any(t is None for t in truth) or len(set(truth)) < 2 or len(set(pred[idx])) < 2:
            continue
        rhos.append(spearmanr(pred[idx], truth).statistic)
    rated = [i for i, r in enumerate(records) if r.agreement is not None]
    mae = float(np.mean(np.abs(pred[rated] - np.array([records[i].agreement for i in rated])))) if rated else math.nan
    return {"pairwise_accuracy": _round(pairwise), "spearman": _round(float(np.mean(rhos)) if rhos else math.nan),
            "mae": _round(mae), "n_pairs": len(pairs), "n_members_ranked": len(rhos), "n_ratings": len(records)}


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def calibrate(train_feature: np.ndarray, train_agreement: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Least-squares line from a raw score to the 1–7 scale, clipped to it."""
    if len(train_feature) >= 2 and np.ptp(train_feature) > 0:
        slope, intercept = np.polyfit(train_feature, train_agreement, 1)
    else:
        slope, intercept = 0.0, float(np.mean(train_agreement)) if len(train_agreement) else 4.0
    return lambda x: np.clip(slope * np.asarray(x, dtype=np.float64) + intercept, 1, 7)


def baseline_predictions(train: Sequence[RatingRecord], test: Sequence[RatingRecord], *, seed: int = 0,
                         embed: Callable[[list[str]], np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Each baseline's predicted agreement (1–7) for ``test``; ``embed`` enables the cosine baseline."""
    rated = [r for r in train if r.agreement is not None]
    train_agreement = np.array([r.agreement for r in rated], dtype=np.float64)
    rng = np.random.default_rng(seed)
    out = {"random": rng.uniform(1, 7, size=len(test))}

    def length(rows):
        return np.array([len(r.candidate.split()) for r in rows], dtype=np.float64)

    out["candidate_length"] = calibrate(length(rated), train_agreement)(length(test))
    if embed is not None:
        # Opinions and candidates repeat across ratings: embed each distinct text once.
        unique = sorted({r.opinion for r in [*rated, *test]} | {r.candidate for r in [*rated, *test]})
        vector = dict(zip(unique, embed(unique), strict=True)) if unique else {}

        def cosine(rows):
            return np.array([float(np.dot(vector[r.opinion], vector[r.candidate])) for r in rows])

        out["embedding_cosine"] = calibrate(cosine(rated), train_agreement)(cosine(list(test)))
    return out
