"""Ratings → training examples, preference pairs, batches and the group split. Pure Python.

One ``RatingRecord`` is one member's rating of one candidate, carrying the texts the model
reads (question, that member's opinion, their critique in the critique round, the candidate).
The Django side (``analysis.reward.registry``) and the Polis evaluation (``analysis.polis``)
both produce records; everything downstream only sees records.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass

AGREEMENT_MIN, AGREEMENT_MAX = 1, 7


@dataclass(frozen=True)
class RatingRecord:
    group_id: Hashable
    member_id: Hashable
    round: int
    question: str
    opinion: str
    candidate: str
    agreement: int | None = None  # 1..7, None when the member left it empty
    rank: int | None = None  # 1 = best, None when the ranking was incomplete
    critique: str = ""
    candidate_id: Hashable | None = None
    rating_id: int | None = None

    @property
    def member_key(self) -> tuple:
        """Ratings that one member gave in one round: the unit of a ranking."""
        return (self.group_id, self.member_id, self.round)


def member_text(question: str, opinion: str, critique: str = "") -> str:
    """The first segment of the cross-encoder input; the candidate is the second."""
    text = f"Question: {question.strip()}\nOpinion: {opinion.strip()}"
    if critique.strip():
        text += f"\nCritique: {critique.strip()}"
    return text


def agreement_to_target(agreement: int) -> float:
    """1..7 → 0..1, the scale of the model's sigmoid output."""
    return (agreement - AGREEMENT_MIN) / (AGREEMENT_MAX - AGREEMENT_MIN)


def target_to_agreement(target):
    """0..1 → 1..7 (works on floats and numpy arrays)."""
    return AGREEMENT_MIN + (AGREEMENT_MAX - AGREEMENT_MIN) * target


def usable(records: Sequence[RatingRecord]) -> list[RatingRecord]:
    """Records that carry some signal: an agreement or a rank."""
    return [r for r in records if r.agreement is not None or r.rank is not None]


def prefers(a: RatingRecord, b: RatingRecord) -> int:
    """+1 if the member preferred a to b, −1 if b to a, 0 if unknown or tied.

    Ranks decide when both are ranked (the member's explicit order), otherwise agreement.
    """
    if a.rank is not None and b.rank is not None and a.rank != b.rank:
        return 1 if a.rank < b.rank else -1
    if a.agreement is not None and b.agreement is not None and a.agreement != b.agreement:
        return 1 if a.agreement > b.agreement else -1
    return 0


def preference_pairs(records: Sequence[RatingRecord], indices: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """(winner, loser) index pairs within each member's ratings (among ``indices`` if given)."""
    by_member: dict[tuple, list[int]] = {}
    for i in range(len(records)) if indices is None else indices:
        by_member.setdefault(records[i].member_key, []).append(i)
    pairs = []
    for members in by_member.values():
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                i, j = members[x], members[y]
                order = prefers(records[i], records[j])
                if order > 0:
                    pairs.append((i, j))
                elif order < 0:
                    pairs.append((j, i))
    return pairs


def member_batches(records: Sequence[RatingRecord], batch_size: int, seed: int) -> list[list[int]]:
    """Full index batches of ``batch_size`` (the last may be smaller) that keep a member's ratings together.

    Members are shuffled and each member's ratings are shuffled; batches are filled member by
    member. A member who does not fit in what is left of a batch is split (pieces of at least
    two ratings, so every piece still gives ranking pairs). Deterministic for a seed.
    """
    rng = random.Random(seed)
    by_member: dict[tuple, list[int]] = {}
    for i, r in enumerate(records):
        by_member.setdefault(r.member_key, []).append(i)
    keys = sorted(by_member, key=repr)
    rng.shuffle(keys)
    batches: list[list[int]] = []
    current: list[int] = []
    for key in keys:
        items = list(by_member[key])
        rng.shuffle(items)
        while items:
            space = batch_size - len(current)
            if space < min(2, len(items)):
                batches.append(current)
                current, space = [], batch_size
            take = space if len(items) - space != 1 else space - 1  # never leave a lone rating behind
            take = max(1, min(take, len(items)))
            current, items = current + items[:take], items[take:]
    if current:
        batches.append(current)
    return batches


def split_by_group(
    records: Sequence[RatingRecord], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """(train indices, validation indices) with whole groups on one side, never single rows."""
    groups = sorted({r.group_id for r in records}, key=repr)
    random.Random(seed).shuffle(groups)
    n_val = math.ceil(val_fraction * len(groups)) if val_fraction > 0 and len(groups) > 1 else 0
    n_val = min(n_val, len(groups) - 1)
    val_groups = set(groups[:n_val])
    train = [i for i, r in enumerate(records) if r.group_id not in val_groups]
    val = [i for i, r in enumerate(records) if r.group_id in val_groups]
    return train, val


def data_hash(records: Sequence[RatingRecord]) -> str:
    """sha256 of the records in a canonical order: the same ratings always give the same hash."""
    rows = sorted(json.dumps(asdict(r), sort_keys=True, default=str) for r in records)
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def record_value(record: RatingRecord, ranked: int = 0) -> float | None:
    """A rating on the hybrid model's [-1, 1] scale: agreement 1..7 → −1..1 (4 is neutral); without an
    agreement, a rank among ``ranked`` candidates (1 = best → +1, last → −1)."""
    if record.agreement is not None:
        return (record.agreement - 4) / 3
    if record.rank is not None and ranked > 1:
        return 1 - 2 * (record.rank - 1) / (ranked - 1)
    return None


def hybrid_inputs(records: Sequence[RatingRecord]) -> tuple[list, dict]:
    """(known ratings, member texts) for ``analysis.reward.hybrid`` from rating records.

    A member is one participant across the study (``member_id``); their text is their opinion and critiques.
    """
    from .hybrid import Known

    ranked: dict[tuple, int] = {}
    for r in records:
        if r.rank is not None:
            ranked[r.member_key] = ranked.get(r.member_key, 0) + 1
    known = []
    for r in records:
        value = record_value(r, ranked.get(r.member_key, 0))
        if value is not None:
            known.append(Known(r.member_id, r.candidate, value))
    return known, member_texts(records)


def member_texts(records: Sequence[RatingRecord]) -> dict:
    """Each member's own words: their opinions and critiques, each once, in order."""
    texts: dict = {}
    for r in records:
        for text in (r.opinion, r.critique):
            if text and text.strip() and text not in texts.setdefault(r.member_id, []):
                texts[r.member_id].append(text)
    return {m: "\n".join(t) for m, t in texts.items() if t}
