"""Import questions from JSON or CSV (the Habermas Machine question file, or your own).

Accepted fields per row: ``question`` (or ``text``), ``affirming_statement``,
``negating_statement``, ``topic``, ``split``, ``id``. Re-importing is idempotent: rows
are matched on the question text and updated in place.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from .models import Question, Study

SPLITS = {s.value for s in Question.Split}


class ImportFormatError(ValueError):
    pass


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    attached: int = 0


def parse_questions(content: str, *, filename: str) -> list[dict]:
    """Plain rows from JSON (a list, or {"questions": [...]}) or CSV text."""
    if filename.lower().endswith(".json"):
        try:
            data = json.loads(content)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(f"{filename}: not valid JSON ({exc})") from None
        if isinstance(data, dict):
            data = data.get("questions", [])
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise ImportFormatError(f"{filename}: expected a list of objects")
        return data
    if filename.lower().endswith(".csv"):
        return list(csv.DictReader(io.StringIO(content)))
    raise ImportFormatError(f"{filename}: use a .json or .csv file")


def _row_fields(row: dict) -> dict | None:
    text = str(row.get("question") or row.get("text") or "").strip()
    if not text:
        return None
    topic = row.get("topic")
    try:
        topic = int(topic) if topic not in (None, "") else None
    except (TypeError, ValueError):
        topic = None
    split = str(row.get("split") or "").strip()
    return {
        "text": text,
        "external_id": str(row.get("id") or "")[:64],
        "affirming_statement": str(row.get("affirming_statement") or "").strip(),
        "negating_statement": str(row.get("negating_statement") or "").strip(),
        "topic": topic,
        "split": split if split in SPLITS else "",
    }


def questions_import(rows: Iterable[dict], *, source: str, study: Study | None = None,
                     split: str | None = None, limit: int | None = None, progress=None) -> ImportReport:
    report = ImportReport()
    fields_list = []
    for row in rows:
        fields = _row_fields(row)
        if fields is None or (split and fields["split"] != split):
            report.skipped += 1
            continue
        fields_list.append(fields)
        if limit and len(fields_list) >= limit:
            break
    with transaction.atomic():
        existing = {q.text: q for q in Question.objects.filter(text__in=[f["text"] for f in fields_list])}
        new = [Question(source=source[:200], **f) for f in fields_list if f["text"] not in existing]
        Question.objects.bulk_create(new, batch_size=500)
        report.created = len(new)
        for f in fields_list:
            q = existing.get(f["text"])
            if q is not None:
                for key, value in f.items():
                    setattr(q, key, value)
                report.updated += 1
            if progress:
                progress.update(1)
        Question.objects.bulk_update(list(existing.values()),
                                     ["external_id", "affirming_statement", "negating_statement", "topic", "split"],
                                     batch_size=500)
        if study is not None:
            ids = Question.objects.filter(text__in=[f["text"] for f in fields_list]).values_list("id", flat=True)
            study.questions.add(*ids)
            report.attached = len(ids)
    return report


def import_file(path: Path, **kwargs) -> ImportReport:
    rows = parse_questions(path.read_text(encoding="utf-8"), filename=path.name)
    return questions_import(rows, source=path.name, **kwargs)
