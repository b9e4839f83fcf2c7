"""CSV export of any model's rows: every concrete field, foreign keys as ids, times in ISO 8601."""
from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import IO

from django.db import models


def field_names(model: type[models.Model]) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


def _cell(value) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def write_csv(queryset: models.QuerySet, out: IO[str], exclude: Iterable[str] = ()) -> int:
    names = [n for n in field_names(queryset.model) if n not in set(exclude)]
    writer = csv.writer(out)
    writer.writerow(names)
    count = 0
    for row in queryset.order_by("pk").values_list(*names).iterator(chunk_size=2000):
        writer.writerow([_cell(v) for v in row])
        count += 1
    return count
