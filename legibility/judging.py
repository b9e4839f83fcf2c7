"""Pure judging logic: a judge's balanced queue and the chance-level test. Django-free (plain data).

Queues are balanced so that a judge who always answers "correct" scores 50 %, and mixed across
provers and rounds so that every checkpoint is judged; a problem appears at most once per judge,
so seeing one solution never gives away another.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from scipy.stats import binomtest


@dataclass(frozen=True)
class Candidate:
    solution_id: int
    problem_id: int
    correct: bool
    stratum: tuple  # (source, role, round): who wrote it
    is_gold: bool = False


@dataclass(frozen=True)
class QueuedItem:
    solution_id: int
    is_gold: bool


def _pick_balanced(pool: list[Candidate], n: int, rng: random.Random, used_problems: set[int]) -> list[Candidate]:
    """n candidates, half correct and half incorrect (odd n: a coin decides the extra one), taken
    round-robin over strata so each prover and round is represented; problems not reused."""
    n_correct = n // 2 + (rng.random() < 0.5 if n % 2 else 0)
    chosen: list[Candidate] = []
    for want_correct, count in ((True, n_correct), (False, n - n_correct)):
        by_stratum: dict[tuple, list[Candidate]] = defaultdict(list)
        for c in pool:
            if c.correct == want_correct:
                by_stratum[c.stratum].append(c)
        strata = sorted(by_stratum, key=repr)
        rng.shuffle(strata)
        for key in strata:
            rng.shuffle(by_stratum[key])
        taken = 0
        while taken < count and any(by_stratum.values()):
            for key in strata:
                bucket = by_stratum[key]
                while bucket and bucket[-1].problem_id in used_problems:
                    bucket.pop()
                if bucket and taken < count:
                    c = bucket.pop()
                    used_problems.add(c.problem_id)
                    chosen.append(c)
                    taken += 1
        if taken < count:
            raise ValueError(f"not enough {'correct' if want_correct else 'incorrect'} solutions on distinct problems "
                             f"for a balanced queue (need {count}, found {taken})")
    return chosen


def build_queue(candidates: list[Candidate], *, n_items: int, gold_share: float, seed: int) -> list[QueuedItem]:
    """A judge's items in order: ``round(n_items * gold_share)`` gold items, the rest regular; both balanced."""
    if n_items < 1:
        raise ValueError("a queue needs at least one item")
    rng = random.Random(seed)
    n_gold = round(n_items * gold_share)
    used: set[int] = set()
    gold = _pick_balanced([c for c in candidates if c.is_gold], n_gold, rng, used) if n_gold else []
    gold_ids = {c.solution_id for c in gold}
    regular = _pick_balanced([c for c in candidates if c.solution_id not in gold_ids], n_items - n_gold, rng, used)
    items = [QueuedItem(c.solution_id, True) for c in gold] + [QueuedItem(c.solution_id, False) for c in regular]
    rng.shuffle(items)
    return items


def chance_p_value(n_right: int, n_total: int) -> float:
    """One-sided binomial test of accuracy above 0.5 (1.0 when there is nothing to test)."""
    if n_total <= 0:
        return 1.0
    return float(binomtest(n_right, n_total, 0.5, alternative="greater").pvalue)


def at_chance_level(n_right: int, n_total: int, alpha: float) -> bool:
    """True when the judge's accuracy is not significantly above chance at level ``alpha``."""
    return chance_p_value(n_right, n_total) > alpha


def min_testable(alpha: float) -> int:
    """Fewest items on which even a perfect score is significant (0.5**n <= alpha)."""
    n = 1
    while 0.5 ** n > alpha:
        n += 1
    return n


def judge_flagged(*, n_right: int, n_answered: int, gold_right: int, gold_answered: int, alpha: float) -> bool:
    """Flag a judge for exclusion: overall accuracy not above chance, or gold accuracy at chance.

    Gold items are few per judge (4 of 20 by default), too few for a perfect score to be
    significant, so below ``min_testable(alpha)`` gold answers the gold check is the point
    estimate: at most half right is at chance.
    """
    if at_chance_level(n_right, n_answered, alpha):
        return True
    if gold_answered >= min_testable(alpha):
        return at_chance_level(gold_right, gold_answered, alpha)
    return gold_answered > 0 and gold_right * 2 <= gold_answered


def judge_outcome(*, n_items: int, n_timed_out: int, flagged: bool, max_timeout_share: float) -> str:
    """How a judge finished, which decides their completion code: ``timed_out`` when more than
    ``max_timeout_share`` of their items timed out, else ``excluded`` when flagged at chance level
    (``judge_flagged``), else ``completed``."""
    if n_items and n_timed_out > max_timeout_share * n_items:
        return "timed_out"
    return "excluded" if flagged else "completed"
