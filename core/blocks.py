"""Seeded permuted blocks: balanced, reproducible assignment of groups to conditions and arms.

Consecutive groups fall into blocks of ``size``; within each block the order of the slots is a permutation drawn
from the seed and the block number, so every block holds each slot exactly once. Reproducible from the seed and
the group's ordinal alone (never database ids).
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from .seeds import derive_seed

T = TypeVar("T")


def block_rank(*, seed: int, label: object, ordinal: int, size: int) -> int:
    """Where the group with this ordinal falls in its block's permutation: 0 .. size-1."""
    if size < 1:
        raise ValueError("A block needs at least one slot.")
    block, slot = divmod(ordinal, size)
    order = list(range(size))
    random.Random(derive_seed(seed, *(label if isinstance(label, tuple) else (label,)), block)).shuffle(order)
    return order.index(slot)


def weighted_block_choice(items: Sequence[tuple[T, int]], *, seed: int, label: object, ordinal: int) -> T:
    """The item for the group with this ordinal: each (item, weight) appears ``weight`` times per block."""
    if not items:
        raise ValueError("Nothing to choose from.")
    if any(not isinstance(weight, int) or weight < 1 for _, weight in items):
        raise ValueError("Every weight must be a whole number of at least 1.")
    expanded = [item for item, weight in items for _ in range(weight)]
    return expanded[block_rank(seed=seed, label=label, ordinal=ordinal, size=len(expanded))]
