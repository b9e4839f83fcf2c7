"""Train/test overlap guard, shared by any model that records what it trained on (no Django).

A model stores ``text_hash`` of each problem it trained on; an evaluation drops the items whose problem
hash is among them and says how many problems it dropped:

    hashes = sorted({text_hash(p) for p in training_problems})        # saved with the model
    kept, dropped = overlap(hashes, examples, key=lambda e: e.problem)
    # dropped: the number of distinct overlapping problems; kept: the items safe to evaluate on
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


def normalise(text: str) -> str:
    """NFKC, curly quotes straightened, whitespace collapsed, case folded: the same problem copied between
    files (a trailing newline, a typographic apostrophe) hashes the same."""
    text = unicodedata.normalize("NFKC", text or "")
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    return re.sub(r"\s+", " ", text).strip().casefold()


def text_hash(text: str) -> str:
    """A stable 16-hex-digit SHA-256 of the normalised text."""
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:16]


def overlap(train_hashes: Iterable[str], items: Sequence[T], key: Callable[[T], str] = str) -> tuple[list[T], int]:
    """(items whose ``key`` text was not trained on, number of distinct overlapping texts dropped)."""
    seen = set(train_hashes)
    kept, dropped = [], set()
    for item in items:
        digest = text_hash(key(item))
        if digest in seen:
            dropped.add(digest)
        else:
            kept.append(item)
    return kept, len(dropped)
