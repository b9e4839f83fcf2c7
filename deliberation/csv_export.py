"""CSV export of any model's rows: every concrete field, foreign keys as ids, times in ISO 8601.

The admin's CSV action goes through the same code as ``manage.py export`` (``analysis.exports``): no tokens,
no recruitment ids or join-link parameters unless asked for, and no cell a spreadsheet would run as a formula
(``deliberation.spreadsheet``).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import IO

from django.db import models


def field_names(model: type[models.Model]) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


def write_csv(queryset: models.QuerySet, out: IO[str], exclude: Iterable[str] = (), *,
              include_recruitment_ids: bool = False) -> int:
    from analysis.exports import RECRUITMENT_FIELDS, queryset_frame, write_csv_frame

    hidden = (*exclude, *(() if include_recruitment_ids else RECRUITMENT_FIELDS))
    return write_csv_frame(queryset_frame(queryset, hidden), out)
