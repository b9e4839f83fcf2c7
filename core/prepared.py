"""Querysets compiled to SQL once per process, then run with new values.

On the realtime hot paths (a socket's connect, ping and snapshot; a submission) Django builds and compiles the
same few query shapes thousands of times a minute, and building and compiling was about half of their CPU
(docs/load.md). A :class:`Prepared` query is built once per database with stand-in values for its parameters,
compiled, and its SQL kept. Each call puts the real values where the stand-ins were and runs that SQL through
Django's own cursor, so ``CaptureQueriesContext``, execute wrappers and the debug log still see it. It then
applies the converters Django would and, for a model queryset, makes the instances as Django's ``ModelIterable``
does, ``select_related`` objects and annotations included.

Parameters are ints or strings that reach the SQL unchanged: equality and ``IN``-free lookups (``pk=``,
``token=``, ``channel_name=``). A stand-in that does not show up in the compiled parameters as given (a
``__contains`` lookup wraps it, for one) makes building fail at once. ``None`` is refused: it changes the SQL
(``IS NULL``). Use it for a handful of hot, fixed shapes; everything else stays plain ORM.

    participant_row = Prepared(lambda pk: Participant.objects.filter(pk=pk).values_list("status", "group_id"),
                               pk=int)
    status, group_id = participant_row.one(pk=42)
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet, ImproperlyConfigured
from django.db import connections
from django.db.models.query import (
    FlatValuesListIterable,
    ModelIterable,
    NamedValuesListIterable,
    ValuesIterable,
    ValuesListIterable,
    get_related_populators,
)
from django.db.transaction import TransactionManagementError

# Stand-ins: ints within every integer column's range (Django compiles an out-of-range lookup to "no rows"), and
# strings with control bytes. A query is compiled with two sets of them, and the parameters must sit in the same
# places both times, so a constant of the query that happens to equal a stand-in is caught, not replaced.
_next_stand_in = itertools.count(1)
_INT_BASE = 20_000  # a positive smallint


def _stand_in(kind: type) -> Any:
    number = next(_next_stand_in)
    if kind is int:
        return _INT_BASE + number % 10_000
    if kind is str:
        return f"\x1fprepared-{number}\x1f"
    raise TypeError(f"a prepared parameter is int or str, not {kind!r}")


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple
    slots: tuple[tuple[int, str], ...]  # (position in params, parameter name)
    converters: dict
    for_update: bool
    source_model: type  # the queryset's model (its DoesNotExist)
    # Model querysets: how a row becomes an instance (what ModelIterable computes per query).
    model: type | None = None
    init_list: tuple[str, ...] = ()
    fields_slice: tuple[int, int] = (0, 0)
    populators: tuple = ()
    annotations: tuple[tuple[str, int], ...] = ()
    # values() / values_list() querysets.
    flat: bool = False
    names: tuple[str, ...] = ()
    as_dicts: bool = False


class Prepared:
    """A queryset shape compiled once per database alias. ``build(**values)`` returns the queryset; ``types``
    names each parameter's type (int or str)."""

    def __init__(self, build: Callable[..., Any], **types: type):
        if not types:
            raise TypeError("a prepared query takes at least one parameter")
        self.build, self.types = build, types
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        self._lock = threading.Lock()

    # --- running ---------------------------------------------------------------------------------------
    def rows(self, *, using: str = "default", **values: Any) -> list:
        """Every row: instances for a model queryset, else what its ``values_list()`` / ``values()`` gives."""
        connection = connections[using]
        compiled = self._compiled.get((using, connection.vendor)) or self._compile(using)
        if compiled.for_update and connection.get_autocommit():
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        params = list(compiled.params)
        for position, name in compiled.slots:
            params[position] = self._value(name, values)
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        if compiled.converters:
            rows = [self._convert(row, compiled.converters, connection) for row in rows]
        if compiled.model is not None:
            return [self._instance(row, compiled, using) for row in rows]
        if compiled.flat:
            return [row[0] for row in rows]
        if compiled.as_dicts:
            return [dict(zip(compiled.names, row)) for row in rows]
        return [tuple(row) for row in rows]

    def first(self, *, using: str = "default", **values: Any) -> Any:
        """The first row, or None."""
        rows = self.rows(using=using, **values)
        return rows[0] if rows else None

    def one(self, *, using: str = "default", **values: Any) -> Any:
        """The one row; the queryset model's ``DoesNotExist`` when there is none."""
        rows = self.rows(using=using, **values)
        if not rows:
            model = self._compiled[(using, connections[using].vendor)].source_model
            raise model.DoesNotExist(f"{model.__name__} matching {values!r} does not exist.")
        return rows[0]

    def _value(self, name: str, values: dict) -> Any:
        try:
            value = values[name]
        except KeyError:
            raise TypeError(f"missing prepared parameter {name!r}") from None
        kind = self.types[name]
        if value is None or isinstance(value, bool) or not isinstance(value, kind):
            raise TypeError(f"prepared parameter {name!r} must be {kind.__name__}, not {value!r}")
        return value

    @staticmethod
    def _convert(row, converters: dict, connection) -> list:
        row = list(row)
        for position, (functions, expression) in converters.items():
            value = row[position]
            for function in functions:
                value = function(value, expression, connection)
            row[position] = value
        return row

    @staticmethod
    def _instance(row, c: _Compiled, using: str):
        start, end = c.fields_slice
        obj = c.model.from_db(using, list(c.init_list), row[start:end])
        for populator in c.populators:
            populator.populate(row, obj)
        for attribute, position in c.annotations:
            setattr(obj, attribute, row[position])
        return obj

    # --- building ------------------------------------------------------------------------------------------
    def _build(self, using: str):
        stand_ins = {name: _stand_in(kind) for name, kind in self.types.items()}
        queryset = self.build(**stand_ins)
        compiler = queryset.query.get_compiler(using=using)
        try:
            sql, params = compiler.as_sql()
        except (EmptyResultSet, FullResultSet):
            raise ImproperlyConfigured("a prepared query must compile to SQL for any value (this one compiled to no "
                                       "rows or all rows for a stand-in value)") from None
        by_value = {value: name for name, value in stand_ins.items()}
        slots = tuple((i, by_value[p]) for i, p in enumerate(params)
                      if isinstance(p, int | str) and not isinstance(p, bool) and p in by_value)
        missing = set(stand_ins) - {name for _, name in slots}
        if missing:
            raise ImproperlyConfigured(f"prepared parameters {sorted(missing)} do not reach the SQL unchanged: {sql}")
        return queryset, compiler, sql, params, slots

    def _compile(self, using: str) -> _Compiled:
        connection = connections[using]
        with self._lock:
            key = (using, connection.vendor)
            if key in self._compiled:
                return self._compiled[key]
            queryset, compiler, sql, params, slots = self._build(using)
            again = self._build(using)
            if (again[2], again[4]) != (sql, slots):
                raise ImproperlyConfigured(f"a prepared query's SQL or parameter places change with its values: {sql}")
            select = compiler.select[:compiler.col_count]
            converters = compiler.get_converters([column for column, _, _ in select])
            common = dict(sql=sql, params=tuple(params), slots=slots, converters=converters,
                          for_update=queryset.query.select_for_update, source_model=queryset.model)
            iterable = queryset._iterable_class
            if iterable is ModelIterable:
                info = compiler.klass_info
                fields = info["select_fields"]
                start, end = fields[0], fields[-1] + 1
                compiled = _Compiled(
                    **common, model=info["model"],
                    init_list=tuple(f[0].target.attname for f in compiler.select[start:end]),
                    fields_slice=(start, end),
                    populators=tuple(get_related_populators(info, compiler.select, using)),
                    annotations=tuple(compiler.annotation_col_map.items()))
            elif iterable in (ValuesListIterable, FlatValuesListIterable, ValuesIterable):
                query = queryset.query  # Django 5.2 selects the columns in the order asked (query.selected)
                names = list(query.selected) if query.selected else [
                    *query.extra_select, *query.values_select, *query.annotation_select]
                compiled = _Compiled(**common, flat=iterable is FlatValuesListIterable, names=tuple(names),
                                     as_dicts=iterable is ValuesIterable)
            else:
                kind = "named values_list" if iterable is NamedValuesListIterable else iterable.__name__
                raise ImproperlyConfigured(f"a prepared query returns instances, values() or values_list(), "
                                           f"not {kind}")
            self._compiled[key] = compiled
            return compiled
