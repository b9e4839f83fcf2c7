"""A legibility study's data as CSV files: judgments (one row per judge and item), items (the solutions judges
saw, with their problem) and judges (what the judge admin's CSV action writes). Every file goes through the
admin's CSV writer (``core.csv_export.write_csv``): no tokens, recruitment ids only on request, no cell a
spreadsheet would run as a formula."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.csv_export import write_csv

from .models import JudgeItem, JudgeSession, LegibilityStudy, Problem, Solution

FILES = ("judges", "judgments", "items", "problems")


def legibility_export(study: LegibilityStudy, out: Path, *, include_recruitment_ids: bool = False,
                      progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Write ``FILES`` as ``out/NAME.csv``; returns the rows written per file."""
    out.mkdir(parents=True, exist_ok=True)
    judged = JudgeItem.objects.filter(session__study=study)
    querysets = {
        "judges": JudgeSession.objects.filter(study=study),
        "judgments": judged,
        "items": Solution.objects.filter(pk__in=judged.values("solution_id")),
        "problems": Problem.objects.filter(pk__in=judged.values("solution__problem_id")),
    }
    counts = {}
    for name in FILES:
        with open(out / f"{name}.csv", "w", encoding="utf-8", newline="") as handle:
            counts[name] = write_csv(querysets[name], handle, exclude=("token",),
                                     include_recruitment_ids=include_recruitment_ids)
        if progress:
            progress(name)
    return counts
