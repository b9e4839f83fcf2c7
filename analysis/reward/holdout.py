"""Which groups a reward model is validated on: whole groups, or every group of a share of questions or topics.

Pure Python. A unit (group, question or topic) is held out by the rank of a seeded hash of its key, not by a
shuffle of all units, so a unit held out by one version stays held out in the next as a study grows (only the
units near the cut can move): successive versions can be compared on groups neither of them trained on.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable, Mapping

HOLDOUTS = ("group", "question", "topic")


def _rank_key(unit: Hashable, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{unit!r}".encode()).hexdigest()


def held_out_groups(unit_of_group: Mapping[Hashable, Hashable], val_fraction: float, seed: int) -> set:
    """The groups whose unit is held out: ``ceil(val_fraction x units)`` units, never all of them.

    ``unit_of_group`` maps each group id to its unit (the group itself, its question or its topic).
    """
    units = sorted(set(unit_of_group.values()), key=lambda u: _rank_key(u, seed))
    n_val = math.ceil(val_fraction * len(units)) if val_fraction > 0 and len(units) > 1 else 0
    held = set(units[: min(n_val, len(units) - 1)])
    return {g for g, unit in unit_of_group.items() if unit in held}
