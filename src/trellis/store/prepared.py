"""Statements of a hot path, run on the driver's cursor inside a SQLAlchemy transaction.

``Connection.execute`` builds an execution context and a result wrapper around every
statement, even a cached one: for an operator's acknowledgement (an ``UPDATE … RETURNING``
and an ``INSERT``) that was about 36 µs and 17 µs of Python, several times what SQLite
spends running them. :class:`Prepared` keeps the portability of SQLAlchemy Core (the
statement is written once, compiled per dialect, parameters in the driver's own style,
values through the column types' bind and result processors) and drops the rest: it runs
on the DBAPI cursor of the connection it is given, in that connection's transaction.

Use it only where a measurement says so; everything else goes through ``execute``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["Prepared"]

_Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    compiled: SQLCompiler
    sql: str
    positional: tuple[str, ...] | None  # parameter names in order, for qmark/format drivers
    binds: tuple[tuple[str, _Processor], ...]


class Prepared:
    """``statement`` compiled once per dialect and run on the driver's cursor."""

    def __init__(self, statement: sa.Insert | sa.Update | sa.Delete | sa.Select[Any]) -> None:
        self._statement = statement
        self._names = tuple(str(column.key) for column in statement.exported_columns)
        self._by_dialect: dict[str, _Compiled] = {}
        self._processors: dict[tuple[str, tuple[Any, ...]], tuple[_Processor | None, ...]] = {}

    @property
    def columns(self) -> tuple[str, ...]:
        """The names of the values in each returned row, in order."""
        return self._names

    def _compile(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is not None:
            return found
        compiled = self._statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("a prepared statement cannot hold an expanding IN (...)")
        binds = []
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                binds.append((name, process))
        positional = tuple(compiled.positiontup or ()) if compiled.positional else None
        found = _Compiled(compiled, compiled.string, positional, tuple(binds))
        self._by_dialect[dialect.name] = found
        return found

    def _results(
        self, dialect: Dialect, description: Sequence[Sequence[Any]]
    ) -> tuple[_Processor | None, ...]:
        """The result processors of the returned columns, for the driver's type codes
        (some depend on them: a PostgreSQL numeric comes back as float or Decimal)."""
        key = (dialect.name, tuple(column[1] for column in description))
        found = self._processors.get(key)
        if found is None:
            if len(description) != len(self._statement.exported_columns):
                raise ValueError(
                    f"the driver returned {len(description)} columns where the statement "
                    f"names {len(self._statement.exported_columns)} (an implicit RETURNING? "
                    "use insert().inline())"
                )
            found = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, described[1])
                for column, described in zip(
                    self._statement.exported_columns, description, strict=True
                )
            )
            self._processors[key] = found
        return found

    def run(self, connection: sa.Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Execute with ``params`` in ``connection``'s transaction; the rows it returns
        (``RETURNING`` or a ``SELECT``), each value through its column type."""
        prepared = self._compile(connection.dialect)
        values = prepared.compiled.construct_params(dict(params))
        for name, process in prepared.binds:
            if name in values:
                values[name] = process(values[name])
        cursor = connection.connection.cursor()
        try:
            if prepared.positional is None:
                cursor.execute(prepared.sql, values)
            else:
                cursor.execute(prepared.sql, [values[name] for name in prepared.positional])
            if cursor.description is None:
                return []
            rows = cursor.fetchall()
            processors = self._results(connection.dialect, cursor.description)
        finally:
            cursor.close()
        if not any(processors):
            return [tuple(row) for row in rows]
        return [
            tuple(
                value if process is None or value is None else process(value)
                for process, value in zip(processors, row, strict=True)
            )
            for row in rows
        ]
