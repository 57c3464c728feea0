"""Ratings export as CSV, streamed row by row with bounded memory.

Two paths write the same bytes.  On PostgreSQL the database formats the CSV
itself (``COPY (SELECT ...) TO STDOUT``) and Python only moves the rows; on
other databases the rows go through the ORM and ``csv.writer``.

Every live rating is a row, test-retest repeats included: the last column,
``is_repeat``, marks them, so that an analysis of self-consistency has them
and a training set can drop them (training itself reads only first ratings).
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connections
from django.db.models import F, Func, QuerySet, TextField, Value
from django.db.models.functions import Concat
from django.http import HttpRequest
from rest_framework.request import Request

from .audit import audit_record
from .models import Rating
from .users import User

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.sql.compiler import SQLCompiler

EXPORT_COLUMNS = (
    "image_path",
    "rating",
    "modality",
    "expert_level",
    "prompt",
    "rater",
    "round",
    "round_id",
    "image_uid",
    "image_source",
    "is_control",
    "model_version",
    "reward_score",
    "flags",
    "comment",
    "time_taken_ms",
    "created_at",
    "is_repeat",
)
_FIELDS = (
    "image__file",
    "score",
    "image__modality",
    "rater__rater_profile__expert_level",
    "image__prompt",
    "rater__username",
    "round__name",
    "round_id",
    "image__uid",
    "image__source",
    "assignment__round_image__is_control",
    "image__model_version__name",
    "image__reward_score",
    "flags",
    "comment",
    "time_taken_ms",
    "created_at",
    "is_repeat",
)
# Cells that hold free text (or text built from it); only these can need the
# formula escape, so the other columns skip the check.
_TEXT_COLUMNS = (0, 2, 3, 4, 5, 6, 9, 11, 13, 14)
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_CHARS = "".join(_FORMULA_PREFIXES)
_ROWS_PER_FETCH = 5000


def csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formulas: a leading quote makes the cell text."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


class _Line:
    """What ``csv.writer`` writes: one record, returned with a ``\\n`` ending.

    The writer is told that records end in ``\\r\\n`` so that it quotes a cell
    holding a bare ``\\r`` as well as one holding ``\\n``, as PostgreSQL's COPY
    does.  Left unquoted, a ``\\r`` ends the record for most CSV readers.
    """

    def write(self, line: str) -> str:
        return line[:-2] + "\n"


def _writer() -> Any:
    return csv.writer(_Line(), lineterminator="\r\n")


def ratings_for_export(*, round_id: int | None = None) -> QuerySet[Rating]:
    qs = Rating.objects.filter(retracted_at=None)
    if round_id is not None:
        qs = qs.filter(round_id=round_id)
    return qs.order_by("id")


def export_rows(
    queryset: QuerySet[Rating], *, absolute_paths: bool = False
) -> Iterator[str]:
    """Yield the CSV text one record at a time, header first.

    PostgreSQL formats the rows itself (``export_rows_copy``); other databases
    go through the ORM (``export_rows_python``).  Both give the same bytes.
    """
    if connections[queryset.db].vendor == "postgresql":
        return export_rows_copy(queryset, absolute_paths=absolute_paths)
    return export_rows_python(queryset, absolute_paths=absolute_paths)


def export_rows_python(
    queryset: QuerySet[Rating], *, absolute_paths: bool = False
) -> Iterator[str]:
    """The ORM path: fetch the columns, format and escape them in Python."""
    writer = _writer()
    yield writer.writerow(EXPORT_COLUMNS)
    media_root = Path(settings.MEDIA_ROOT)
    for row in queryset.values_list(*_FIELDS).iterator(chunk_size=_ROWS_PER_FETCH):
        out = list(row)
        if absolute_paths:
            out[0] = str(media_root / out[0])
        uid = out[8]
        out[8] = uid.hex if uid is not None else ""
        out[13] = ";".join(out[13]) if out[13] else ""
        out[16] = out[16].isoformat()
        for i in _TEXT_COLUMNS:
            value = out[i]
            if value and value[0] in _FORMULA_CHARS:
                out[i] = "'" + value
        yield writer.writerow(out)


# SQL that formats each column as ``export_rows_python`` does.  Every
# template only rearranges the column it wraps; no value is formatted into SQL.
_PG_TEXT = (
    "CASE WHEN LEFT(%(expressions)s, 1) IN ('=', '+', '-', '@', CHR(9), CHR(13)) "
    "THEN '''' || %(expressions)s ELSE NULLIF(%(expressions)s, '') END"
)
_PG_BOOL = "CASE %(expressions)s WHEN TRUE THEN 'True' WHEN FALSE THEN 'False' END"
_PG_UUID_HEX = "REPLACE(%(expressions)s::text, '-', '')"
# float8 prints the shortest exact digits, as Python's repr does, but without
# the ``.0`` that repr gives a whole number.
_PG_FLOAT = (
    "CASE WHEN %(expressions)s = TRUNC(%(expressions)s) "
    "AND ABS(%(expressions)s) < 1e15 "
    "THEN %(expressions)s::text || '.0' ELSE %(expressions)s::text END"
)
# Flags joined by ";".  An array of plain strings prints as ``["a", "b"]``;
# without a backslash no element holds a quote, so trimming the brackets and
# replacing ``", "`` is exact and far cheaper than unnesting every row.
_PG_FLAGS = (
    "CASE WHEN JSONB_TYPEOF(%(expressions)s) <> 'array' "
    "OR %(expressions)s = '[]'::jsonb THEN NULL "
    "WHEN LEFT(%(expressions)s::text, 2) = '[\"' "
    "AND STRPOS(%(expressions)s::text, '\\') = 0 "
    "THEN REPLACE(SUBSTR(%(expressions)s::text, 3, "
    "LENGTH(%(expressions)s::text) - 4), '\", \"', ';') "
    "ELSE (SELECT STRING_AGG(f.v, ';' ORDER BY f.n) "
    "FROM JSONB_ARRAY_ELEMENTS_TEXT(%(expressions)s) WITH ORDINALITY AS f(v, n)) "
    "END"
)
# datetime.isoformat() of an aware UTC datetime: microseconds only when set.
_PG_ISO_UTC = (
    "REPLACE(TO_CHAR(%(expressions)s AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), '.000000+', '+')"
)


class _Format(Func):
    """``template`` around one expression, which it may name several times."""

    output_field = TextField()

    def as_sql(
        self,
        compiler: SQLCompiler,
        connection: BaseDatabaseWrapper,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra: Any,
    ) -> tuple[str, tuple[Any, ...]]:
        sql, params = super().as_sql(
            compiler,
            connection,
            function=function,
            template=template,
            arg_joiner=arg_joiner,
            **extra,
        )
        own = self.extra.get("template", self.template)
        return sql, tuple(params) * own.count("%(expressions)s")


def _sql(template: str, expression: Any) -> Func:
    return _Format(expression, template=template)


def _copy_columns(*, absolute_paths: bool) -> list[Any]:
    """One SQL expression per export column, in ``EXPORT_COLUMNS`` order."""
    image_path: Any = F("image__file")
    if absolute_paths:
        # str(Path(root) / name) for the relative names that uploads store.
        prefix = str(Path(settings.MEDIA_ROOT) / "x")[:-1]
        image_path = Concat(Value(prefix), image_path, output_field=TextField())
    columns: list[Any] = []
    for i, name in enumerate(_FIELDS):
        expr: Any = F(name)
        if i == 0:
            expr = image_path
        elif name == "image__uid":
            expr = _sql(_PG_UUID_HEX, expr)
        elif name == "assignment__round_image__is_control":
            expr = _sql(_PG_BOOL, expr)
        elif name == "image__reward_score":
            expr = _sql(_PG_FLOAT, expr)
        elif name == "flags":
            expr = _sql(_PG_FLAGS, expr)
        elif name == "created_at":
            expr = _sql(_PG_ISO_UTC, expr)
        elif name == "is_repeat":
            expr = _sql(_PG_BOOL, expr)
        if i in _TEXT_COLUMNS:
            expr = _sql(_PG_TEXT, expr)
        columns.append(expr)
    return columns


def copy_sql(
    queryset: QuerySet[Rating], *, absolute_paths: bool = False
) -> tuple[str, tuple[Any, ...]]:
    """The ``COPY ... TO STDOUT`` statement and its parameters for ``queryset``.

    The queryset's own filters and order stay as Django compiles them; the
    parameters are bound by psycopg, never formatted into the text here.
    """
    names = [f"c{i}" for i in range(len(EXPORT_COLUMNS))]
    exprs = _copy_columns(absolute_paths=absolute_paths)
    query = (
        queryset.annotate(**dict(zip(names, exprs, strict=True)))
        .values_list(*names)
        .query
    )
    sql, params = query.sql_with_params()
    return f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", tuple(params)


def export_rows_copy(
    queryset: QuerySet[Rating], *, absolute_paths: bool = False
) -> Iterator[str]:
    """The PostgreSQL path: the database writes every record as CSV."""
    connection = connections[queryset.db]
    statement, params = copy_sql(queryset, absolute_paths=absolute_paths)
    yield _writer().writerow(EXPORT_COLUMNS)
    decode = codecs.getincrementaldecoder("utf-8")().decode
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('jit'), current_setting('extra_float_digits')::int"
        )
        jit, float_digits = cursor.fetchone()
        # Compiling these CASE expressions takes JIT longer (seconds) than
        # running them; the setting is put back when the export ends.
        cursor.execute("SET jit = off")
        # float8 text is the shortest exact form only while this is positive
        # (the server default); the Python path's repr() is that form.
        if float_digits < 1:
            cursor.execute("SET extra_float_digits = 1")
        try:
            # Each CopyData message that PostgreSQL sends is one CSV record.
            with cursor.cursor.copy(statement, params) as copy:
                for record in copy:
                    yield decode(record)
        finally:
            cursor.execute("SELECT set_config('jit', %s, false)", [jit])


CHUNK_CHARS = 64 * 1024


def chunked(lines: Iterator[str], *, size: int = CHUNK_CHARS) -> Iterator[str]:
    """Join CSV records into ~64 KiB pieces: one socket write per row is slow."""
    buf: list[str] = []
    held = 0
    for line in lines:
        buf.append(line)
        held += len(line)
        if held >= size:
            yield "".join(buf)
            buf.clear()
            held = 0
    if buf:
        yield "".join(buf)


def ratings_export_start(
    *,
    actor: User,
    round_id: int | None,
    via: str,
    request: HttpRequest | Request | None = None,
) -> Iterator[str]:
    """Audit an export and return its CSV stream in large chunks."""
    audit_record(
        action="export_ratings",
        actor=actor,
        detail={"round": round_id, "via": via},
        request=request,
    )
    return chunked(export_rows(ratings_for_export(round_id=round_id)))
