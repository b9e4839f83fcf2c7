"""The verifier's training mixture over earlier provers (Kirchner et al. 2024: round K's verifier trains on a
balanced mixture of all previous rounds' provers). No Django.

Sampling rule, per group = one (round, role): round 0's base prover (the shipped solutions), then each
earlier round's helpful and sneaky prover.

1. A group **counts** when it holds at least ``min_size`` solutions (``MIN_GROUP_SIZE`` = 20); smaller
   groups are left out and listed as such (a handful of solutions would otherwise be repeated dozens of times).
2. Every counted group contributes the same number of solutions, ``target = min(largest group, max_repeat ×
   smallest group)`` (``MAX_REPEAT`` = 3). A larger group gives a seeded sample without repeats; a smaller one
   gives every solution ⌊target/n⌋ times plus a seeded sample of the rest, so no solution appears more than
   ⌈target/n⌉ ≤ ``max_repeat`` times.
3. Correct and incorrect solutions are balanced per problem by the verifier's loss, not by dropping data: the
   pairwise term pairs each correct solution with an incorrect one of the same problem, and the cross-entropy
   weighs the two classes equally (``legibility.verifier``).

    chosen, report = balanced_mixture({(0, "base"): shipped, (1, "helpful"): h1, (1, "sneaky"): s1}, seed=0)
"""
from __future__ import annotations

import math
import random
from collections.abc import Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")
MIN_GROUP_SIZE = 20
MAX_REPEAT = 3


def balanced_mixture(groups: dict[Hashable, Sequence[T]], *, seed: int = 0, min_size: int = MIN_GROUP_SIZE,
                     max_repeat: int = MAX_REPEAT) -> tuple[list[T], list[dict]]:
    """(the mixture, one report row per group: available, used, most repeats, counted) — see the module."""
    if max_repeat < 1:
        raise ValueError("max_repeat must be at least 1")
    counted = {key: list(items) for key, items in groups.items() if len(items) >= min_size}
    report = []
    if not counted:
        return [], [{"group": _name(key), "available": len(items), "used": 0, "max_repeats": 0, "counted": False}
                    for key, items in groups.items()]
    sizes = [len(items) for items in counted.values()]
    target = min(max(sizes), max_repeat * min(sizes))
    chosen: list[T] = []
    for key in sorted(groups, key=str):
        items = list(groups[key])
        if key not in counted:
            report.append({"group": _name(key), "available": len(items), "used": 0, "max_repeats": 0,
                           "counted": False})
            continue
        rng = random.Random(f"{seed}:{_name(key)}")
        whole, rest = divmod(target, len(items))
        part = items * whole + rng.sample(items, rest)
        chosen.extend(part)
        report.append({"group": _name(key), "available": len(items), "used": len(part),
                       "max_repeats": math.ceil(target / len(items)), "counted": True})
    return chosen, report


def _name(key: Hashable) -> str:
    return " ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)
