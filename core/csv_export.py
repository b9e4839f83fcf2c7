"""CSV export of any model's rows: every concrete field, foreign keys as ids, times in ISO 8601.

The admin's CSV action (``core.admin``) goes through the same code as ``manage.py export``
(``analysis.exports.write_queryset_csv``), which sits above every app's admin (docs/architecture.md) and so
is named by ``settings.CSV_QUERYSET_WRITER`` rather than imported: no tokens, no recruitment ids or join-link
parameters unless asked for, and no cell a spreadsheet would run as a formula (``deliberation.spreadsheet``).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import IO

from django.conf import settings
from django.db import models
from django.utils.module_loading import import_string


def field_names(model: type[models.Model]) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


def write_csv(queryset: models.QuerySet, out: IO[str], exclude: Iterable[str] = (), *,
              include_recruitment_ids: bool = False) -> int:
    return import_string(settings.CSV_QUERYSET_WRITER)(queryset, out, exclude,
                                                       include_recruitment_ids=include_recruitment_ids)
