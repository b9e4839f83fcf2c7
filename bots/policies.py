"""How a simulated participant rates and ranks the candidate statements: the cheap policies (``random``,
``similarity``: ``participants.standins``), an embedding model's cosine similarity to the bot's opinion
(``embedding``), a trained reward model's predicted agreement (``reward:DIR``), or each member's hidden taste
(``hidden:SEED``, ``participants.preferences``).

The models load lazily (a bot process that rates by words never imports torch) and once per process
(``make_scorer``), shared by every bot in it.
"""
from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

from participants import standins
from participants.preferences import parse_spec


class EmbeddingScorer:
    """Cosine similarity of all-MiniLM-L6-v2 embeddings (the reward model's backbone, loaded offline)."""

    def __init__(self):
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def agreement(self, question: str, opinion: str, texts: list[str]) -> list[float]:
        """Predicted agreement on the 1..7 scale: cosine 0.2 or less is 1, 0.8 or more is 7."""
        from analysis.reward.model import embed_texts

        with self._lock:
            missing = [t for t in dict.fromkeys([opinion, *texts]) if t not in self._cache]
            if missing:
                self._cache.update(zip(missing, embed_texts(missing), strict=True))
            mine = self._cache[opinion]
            cosines = [float(mine @ self._cache[t]) for t in texts]
        return [1 + 6 * min(1.0, max(0.0, (c - 0.2) / 0.6)) for c in cosines]


class RewardScorer:
    """A trained reward model's predicted agreement (analysis/reward/score.py) of this bot with each statement."""

    def __init__(self, directory: str):
        from analysis.reward.score import load_reward_model

        if not Path(directory).is_dir():
            raise ValueError(f"no reward model checkpoint folder at {directory}")
        self.model = load_reward_model(directory)
        self._lock = threading.Lock()

    def agreement(self, question: str, opinion: str, texts: list[str]) -> list[float]:
        from analysis.reward.score import score_matrix

        with self._lock:
            return [float(v) for v in score_matrix(self.model, question, [opinion], texts)[0]]


class HiddenScorer:
    """Ratings from each member's hidden taste (``participants.preferences``): the system never sees it."""

    def __init__(self, spec: str):
        self.population = parse_spec(spec)

    def rate(self, member_key: str, texts: list[str]) -> list[tuple[int, int, float]]:
        """(agreement, quality, utility) per text."""
        member = self.population.member(member_key)
        return [(member.agreement(t), member.quality(t), member.utility(t)) for t in texts]


_SCORERS: dict[str, Any] = {}
_SCORERS_LOCK = threading.Lock()


def make_scorer(policy: str):
    """None for the cheap policies; a shared (loaded-once) model scorer for 'embedding' and 'reward:DIR'."""
    if policy in ("random", "similarity"):
        return None
    hidden = policy == "hidden" or policy.startswith("hidden:")
    if policy != "embedding" and not policy.startswith("reward:") and not hidden:
        raise ValueError(f"unknown rating policy {policy!r} (use random, similarity, embedding, reward:DIR or "
                         "hidden:SEED)")
    with _SCORERS_LOCK:
        if policy not in _SCORERS:
            _SCORERS[policy] = (HiddenScorer(policy) if hidden else EmbeddingScorer() if policy == "embedding"
                                else RewardScorer(policy.split(":", 1)[1]))
        return _SCORERS[policy]



def rate(candidates: list[dict], opinion: str, policy: str, rng: random.Random, *,
         question: str = "", member_key: str = "") -> tuple[list[dict], list[int]]:
    """Ratings (agreement, quality 1..7) for every candidate and a full ranking, best first.

    ``member_key`` names the bot in its population for the ``hidden:SEED`` policy."""
    scorer = make_scorer(policy)
    if scorer is None:
        return standins.rate(candidates, opinion, policy, rng)
    if isinstance(scorer, HiddenScorer):
        judged = scorer.rate(member_key, [c["text"] for c in candidates])
        ratings = [{"candidate_id": c["id"], "agreement": a, "quality": q}
                   for c, (a, q, _) in zip(candidates, judged, strict=True)]
        order = sorted(range(len(candidates)), key=lambda i: (-judged[i][2], i))
        return ratings, [candidates[i]["id"] for i in order]
    predicted = scorer.agreement(question, opinion or question, [c["text"] for c in candidates])
    scored = []
    for i, c in enumerate(candidates):  # a model's predicted agreement, 1..7
        agreement = max(1, min(7, round(predicted[i])))
        quality = max(1, min(7, rng.choice((3, 4, 5, 6)) + (1 if len(c["text"].split()) > 12 else 0)))
        scored.append((predicted[i] + rng.random() * 1e-6,
                       {"candidate_id": c["id"], "agreement": agreement, "quality": quality}))
    ratings = [r for _, r in scored]
    ranking = [r["candidate_id"] for _, r in sorted(scored, key=lambda s: -s[0])]
    return ratings, ranking
