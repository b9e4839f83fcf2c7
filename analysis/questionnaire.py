"""The questionnaire's summary for the analyst report: one row per item. Pure (plain rows in, a frame out).

Likert and number items: how many answered, mean, median, min and max; single and multiple choice: how many
answered and each option's count (a multiple-choice answer counts once per option chosen); free text: how many
answered (the texts are in the exports, not in the report)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pandas as pd

COLUMNS = ["key", "text", "kind", "answered", "summary"]


def questionnaire_summary(items: Iterable[dict], answers: Iterable[dict]) -> pd.DataFrame:
    """``items``: dicts with key, text, kind, options (in the questionnaire's order); ``answers``: dicts with
    item_key and value (None for skipped)."""
    values: dict[str, list] = {}
    for answer in answers:
        if answer["value"] is not None:
            values.setdefault(answer["item_key"], []).append(answer["value"])
    rows = []
    for item in items:
        given = values.get(item["key"], [])
        if item["kind"] in ("likert", "number") and given:
            numbers = pd.Series([float(v) for v in given])
            summary = (f"mean {numbers.mean():.2f}, median {numbers.median():g}, "
                       f"range {numbers.min():g}–{numbers.max():g}")
        elif item["kind"] in ("single", "multiple"):
            counts = Counter(v for value in given for v in (value if isinstance(value, list) else [value]))
            summary = ", ".join(f"{option}: {counts.get(option, 0)}" for option in item["options"])
        else:
            summary = ""
        rows.append({"key": item["key"], "text": item["text"], "kind": item["kind"], "answered": len(given),
                     "summary": summary})
    return pd.DataFrame(rows, columns=COLUMNS)
