"""Hand-written SQL for the rating hot path, with model instances from its rows.

A physician's "next image" and "submit rating" run a dozen statements each.
Through the ORM every one of them costs 1-3 ms of CPU to build and compile
(``bench/hotpath.py``: 0.11 ms for a raw SELECT of the round against 1.0 ms
for ``Round.objects.get``, 3.3 ms for the open-assignment query with its
joins), which made CPU, not PostgreSQL, the limit of the load benchmark.  The
hot statements are therefore written out here once, and what they return is
turned into ordinary model instances the way the ORM does it: the backend's
and the fields' converters, then ``Model.from_db``.  Fields not selected are
deferred, so touching one later still works (with a query).

Only table and column names from model metadata are formatted into SQL;
every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any, TypeVar, cast

from django.db import connection
from django.db.models import Model
from django.db.models.expressions import DatabaseDefault
from django.db.models.fields import Field

Converter = Callable[[Any, Any, Any], Any]
M = TypeVar("M", bound=Model)


_QUOTED: dict[tuple[str, str], str] = {}


def qn(name: str) -> str:
    """``name`` quoted for the database (remembered: statements are built on
    every request)."""
    key = (connection.vendor, name)
    quoted = _QUOTED.get(key)
    if quoted is None:
        quoted = _QUOTED[key] = connection.ops.quote_name(name)
    return quoted


def table(model: type[Model]) -> str:
    return qn(model._meta.db_table)


def _concrete_field(model: type[Model], name: str) -> Field[Any, Any]:
    """The field behind a column: callers name concrete fields only (a reverse
    relation or generic foreign key has no column and would fail here)."""
    return cast("Field[Any, Any]", model._meta.get_field(name))


def column(model: type[Model], name: str) -> str:
    return qn(_concrete_field(model, name).column)


class Columns:
    """Some of a model's fields, selected under a table alias.

    The fields are kept in the model's concrete-field order, which is the
    order ``Model.from_db`` expects for a partial row.
    """

    def __init__(self, model: type[Model], alias: str, fields: Iterable[str] = ()):
        wanted = set(fields)
        concrete = model._meta.concrete_fields
        unknown = wanted - {f.name for f in concrete} - {f.attname for f in concrete}
        if unknown:
            raise ValueError(f"{model.__name__} has no field {sorted(unknown)[0]!r}")
        self.model = model
        self.alias = alias
        self.fields = tuple(
            f
            for f in concrete
            if not wanted or f.name in wanted or f.attname in wanted or f.primary_key
        )
        self.attnames = tuple(f.attname for f in self.fields)
        self._sql: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def sql(self) -> str:
        vendor = connection.vendor
        text = self._sql.get(vendor)
        if text is None:
            text = ", ".join(f"{self.alias}.{qn(f.column)}" for f in self.fields)
            self._sql[vendor] = text
        return text

    def _converters(self) -> tuple[tuple[Any, tuple[Converter, ...]], ...]:
        return _converters_for(self.model, self.attnames, connection.vendor)

    def instance(self, values: Sequence[Any]) -> Model:
        converted = list(values)
        for i, (expression, converters) in enumerate(self._converters()):
            for convert in converters:
                converted[i] = convert(converted[i], expression, connection)
        return self.model.from_db(connection.alias, self.attnames, converted)


@cache
def _converters_for(
    model: type[Model], attnames: tuple[str, ...], vendor: str
) -> tuple[tuple[Any, tuple[Converter, ...]], ...]:
    """What the ORM's compiler would apply to each selected column."""
    out = []
    by_attname = {f.attname: f for f in model._meta.concrete_fields}
    for attname in attnames:
        col = by_attname[attname].get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(col) + col.get_db_converters(
            connection
        )
        out.append((col, tuple(converters)))
    return tuple(out)


def fetch(sql: str, params: Sequence[Any], *parts: Columns) -> list[tuple[Any, ...]]:
    """Run ``sql`` and cut each row into one instance per part, in order.

    A part whose primary key is NULL (an outer join that found nothing) gives
    None.
    """
    with connection.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    out = []
    for row in rows:
        start = 0
        instances = []
        for part in parts:
            values = row[start : start + len(part)]
            start += len(part)
            pk_at = next(i for i, f in enumerate(part.fields) if f.primary_key)
            instances.append(None if values[pk_at] is None else part.instance(values))
        out.append(tuple(instances))
    return out


def scalar(sql: str, params: Sequence[Any]) -> Any:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    return None if row is None else row[0]


def execute(sql: str, params: Sequence[Any]) -> int:
    """Run a write; returns the number of rows it touched."""
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.rowcount


def insert(instance: M) -> M:
    """INSERT ``instance`` as ``save()`` would for a new row, and set its pk.

    Field ``pre_save`` runs (``auto_now_add`` stamps the time) and every value
    is prepared by its field; columns left to a database default are skipped.
    No ``save()`` override or signal runs: only models with neither use it.
    """
    meta = instance._meta
    columns, params = [], []
    for field in meta.concrete_fields:
        if field.primary_key and getattr(instance, field.attname) is None:
            continue
        value = field.pre_save(instance, add=True)
        if isinstance(value, DatabaseDefault):
            continue
        columns.append(qn(field.column))
        params.append(field.get_db_prep_save(value, connection))
    pk = meta.pk
    sql = (
        f"INSERT INTO {qn(meta.db_table)} ({', '.join(columns)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(columns))}) RETURNING {qn(pk.column)}"
    )
    with connection.cursor() as cur:
        cur.execute(sql, params)
        setattr(instance, pk.attname, cur.fetchone()[0])
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance


def prep(model: type[Model], field: str, value: Any) -> Any:
    """``value`` as a parameter for ``model.field``'s column."""
    return _concrete_field(model, field).get_db_prep_save(value, connection)
