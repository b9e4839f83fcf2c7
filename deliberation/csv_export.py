"""CSV export of any model's rows: every concrete field, foreign keys as ids, times in ISO 8601.

The admin's CSV action goes through the same code as ``manage.py export`` (``analysis.exports``).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import IO

from django.db import models


def field_names(model: type[models.Model]) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


def write_csv(queryset: models.QuerySet, out: IO[str], exclude: Iterable[str] = ()) -> int:
    from analysis.exports import queryset_frame, write_csv_frame

    return write_csv_frame(queryset_frame(queryset, exclude), out)
